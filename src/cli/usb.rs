//! The CLI's view of USB: list fastboot phones and open one, with errors that say what to do.

use super::CliError;
use crate::transport::usb::{list_fastboot_devices, UsbDeviceInfo, UsbOptions, UsbTransport};
use crate::transport::Transport;

/// Every fastboot phone on USB, listable or not (a phone mi-flash may not open still shows).
pub fn devices() -> Result<Vec<UsbDeviceInfo>, CliError> {
    list_fastboot_devices().map_err(|e| CliError::from_transport("cannot list USB devices", e))
}

/// The `-s` names of the fastboot phones on USB.
pub fn list() -> Result<Vec<String>, CliError> {
    Ok(devices()?.iter().map(|d| d.id()).collect())
}

pub fn open(serial: Option<&str>, chunk_size: Option<usize>) -> Result<Box<dyn Transport>, CliError> {
    let what = match serial {
        Some(s) => format!("cannot open the USB phone {s}"),
        None => "cannot open the USB phone".to_string(),
    };
    let mut options = UsbOptions::default();
    if let Some(n) = chunk_size {
        options = options.with_chunk_size(n).map_err(|e| CliError::from_transport("--usb-chunk-size", e))?;
    }
    UsbTransport::open_with(serial, options).map(|t| Box::new(t) as Box<dyn Transport>).map_err(|e| CliError::from_transport(&what, e))
}
