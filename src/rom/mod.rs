pub mod package;
pub mod verify;
pub mod manifest;
pub mod sample;
