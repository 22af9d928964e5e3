pub mod manifest;
pub mod package;
pub mod sample;
pub mod verify;
