//! The fastboot protocol: the wire codec shared by host and simulated device, the typed
//! client, and what mi-flash reads about a device before it touches it.

pub mod client;
pub mod codec;
pub mod image;

pub use client::{DeviceMessage, FastbootClient};
pub use codec::{Command, RebootTarget, Response};

use crate::transport::TransportError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FastbootError {
    /// The device answered `FAIL`.
    #[error("the device refused `{command}`{}", reason(.message))]
    Refused { command: String, message: String },
    #[error("`{command}` failed: {source}")]
    Transport { command: String, source: TransportError },
    #[error("`{command}`: {source}")]
    Codec { command: String, source: codec::CodecError },
    #[error("`{command}`: the device answered {got} where {expected} was expected")]
    Unexpected { command: String, got: String, expected: String },
    #[error("`{command}`: reading the image failed: {source}")]
    Source { command: String, source: std::io::Error },
}

/// How a refusal reads: the device's message, or that it gave none (a bare `FAIL`).
fn reason(message: &str) -> String {
    if message.trim().is_empty() {
        " without giving a reason".into()
    } else {
        format!(": {message}")
    }
}

impl FastbootError {
    pub(crate) fn transport(cmd: &Command, source: TransportError) -> FastbootError {
        FastbootError::Transport { command: cmd.to_string(), source }
    }
    pub(crate) fn codec(cmd: &Command, source: codec::CodecError) -> FastbootError {
        FastbootError::Codec { command: cmd.to_string(), source }
    }

    /// The device's own message, for a `FAIL`.
    pub fn device_message(&self) -> Option<&str> {
        match self {
            FastbootError::Refused { message, .. } if !message.trim().is_empty() => Some(message),
            _ => None,
        }
    }

    /// What the user can do next.
    pub fn hint(&self) -> Option<String> {
        match self {
            FastbootError::Transport { source, .. } => source.hint(),
            FastbootError::Refused { message, .. } if message.contains("Lock State") => Some(
                "the bootloader is locked: flashing needs an unlocked bootloader (see `mi-flash rescue`)".into(),
            ),
            FastbootError::Codec { .. } | FastbootError::Unexpected { .. } => Some(
                "the device does not speak fastboot as expected: re-plug it, reboot it to the bootloader (Volume down + Power) and try again".into(),
            ),
            _ => None,
        }
    }
}
