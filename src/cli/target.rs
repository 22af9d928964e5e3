//! Which device a command talks to: `-s SERIAL|usb:SERIAL|tcp:HOST[:PORT]|udp:HOST[:PORT]|sim:PROFILE`, else
//! `ANDROID_SERIAL`, else the one fastboot device on USB (several: refuse to guess).

use super::CliError;
use crate::fastboot::FastbootClient;
use crate::sim::{self, SimHandle, SimOptions};
use crate::transport::tcp::{self, TcpTransport};
use crate::transport::udp::{self, UdpOptions, UdpTransport};
use crate::transport::Transport;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Usb(Option<String>),
    Tcp { host: String, port: u16 },
    Udp { host: String, port: u16 },
    Sim { profile: String },
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Target, String> {
        if let Some(rest) = s.strip_prefix("tcp:") {
            let (host, port) = tcp::parse_host_port(rest, tcp::DEFAULT_PORT)?;
            return Ok(Target::Tcp { host, port });
        }
        if let Some(rest) = s.strip_prefix("sim:") {
            if rest.is_empty() {
                return Err("`sim:` needs a profile: sim:moonstone or sim:path/to/profile.toml".into());
            }
            return Ok(Target::Sim { profile: rest.to_string() });
        }
        if let Some(rest) = s.strip_prefix("udp:") {
            let (host, port) = tcp::parse_host_port(rest, udp::DEFAULT_PORT)?;
            return Ok(Target::Udp { host, port });
        }
        let serial = s.strip_prefix("usb:").unwrap_or(s);
        if serial.is_empty() {
            return Err("empty serial".into());
        }
        Ok(Target::Usb(Some(serial.to_string())))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Usb(Some(s)) => write!(f, "usb:{s}"),
            Target::Usb(None) => write!(f, "usb"),
            Target::Tcp { host, port } if host.contains(':') => write!(f, "tcp:[{host}]:{port}"),
            Target::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
            Target::Udp { host, port } if host.contains(':') => write!(f, "udp:[{host}]:{port}"),
            Target::Udp { host, port } => write!(f, "udp:{host}:{port}"),
            Target::Sim { profile } => write!(f, "sim:{profile}"),
        }
    }
}

/// Connection settings shared by every command.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub response_timeout: Duration,
    pub write_timeout: Duration,
    pub sim_store: Option<PathBuf>,
    /// Several `sim:` phones in one command: each keeps its store in `--sim-store DIR/NAME`
    /// instead of all sharing DIR.
    pub sim_store_per_phone: bool,
    pub usb_chunk_size: Option<usize>,
}

/// Where `-s sim:NAME` keeps its partitions when no `--sim-store` is given: the user's state
/// directory, so a flash can be inspected afterwards.
pub fn default_sim_store(name: &str) -> PathBuf {
    let base = dirs::state_dir().or_else(dirs::data_local_dir).unwrap_or_else(std::env::temp_dir);
    base.join("mi-flash").join("sim").join(name)
}

/// The name a `sim:` profile keeps its store under: the built-in name, or the file's name
/// without `.toml`.
fn sim_store_name(profile: &str) -> String {
    let path = Path::new(profile);
    match path.file_stem() {
        Some(stem) if path.is_file() => stem.to_string_lossy().into_owned(),
        _ => profile.to_string(),
    }
}

/// With several `sim:` phones under one `--sim-store DIR`, each keeps `DIR/NAME`: two different
/// profiles with the same NAME would write into one store, so that is refused up front.
pub fn check_sim_store_names(targets: &[Target], opts: &ConnectOptions) -> Result<(), CliError> {
    if !opts.sim_store_per_phone || opts.sim_store.is_none() {
        return Ok(());
    }
    let mut seen: Vec<(String, &str)> = Vec::new();
    for t in targets {
        if let Target::Sim { profile } = t {
            let name = sim_store_name(profile);
            if let Some((_, other)) = seen.iter().find(|(n, p)| *n == name && *p != profile.as_str()) {
                return Err(CliError::new(format!("sim:{other} and sim:{profile} would both keep their store in --sim-store DIR/{name}"))
                    .hint("give the profile files different names")
                    .code(super::rom::EXIT_USAGE));
            }
            seen.push((name, profile));
        }
    }
    Ok(())
}

/// An embedded simulated phone for `-s sim:PROFILE`.
pub fn embedded_sim(profile: &str, opts: &ConnectOptions) -> Result<(SimHandle, PathBuf), CliError> {
    let (p, name) = sim::Profile::load(profile).map_err(|e| CliError::new(e.to_string()).hint(
        "give a built-in profile name (moonstone, oxygen, cereus) or the path of a profile .toml file (docs/simulator.md)",
    ))?;
    let store_dir = match &opts.sim_store {
        Some(dir) if opts.sim_store_per_phone => dir.join(&name),
        Some(dir) => dir.clone(),
        None => default_sim_store(&name),
    };
    let store = sim::Store::open(&store_dir)
        .map_err(|e| CliError::new(format!("cannot use the simulator store {}: {e}", store_dir.display())))?;
    let dev = sim::SimDevice::new(p, store, SimOptions::default())
        .map_err(|e| CliError::new(format!("cannot start the simulated phone: {e}")))?;
    Ok((SimHandle::new(dev, &name), store_dir))
}

/// Opens a link to the target.
pub fn open_link(target: &Target, opts: &ConnectOptions) -> Result<Box<dyn Transport>, CliError> {
    match target {
        Target::Tcp { host, port } => {
            let t = TcpTransport::connect(host, *port, Duration::from_secs(5))
                .map_err(|e| CliError::from_transport(&format!("cannot connect to {target}"), e))?;
            Ok(Box::new(t.with_name(target.to_string())))
        }
        Target::Udp { host, port } => {
            let t = UdpTransport::connect(host, *port, UdpOptions::default())
                .map_err(|e| CliError::from_transport(&format!("cannot connect to {target}"), e))?;
            Ok(Box::new(t.with_name(target.to_string())))
        }
        Target::Sim { profile } => {
            let (handle, store) = embedded_sim(profile, opts)?;
            log::info!("simulated phone {profile}: store {}", store.display());
            Ok(Box::new(handle.connect()))
        }
        Target::Usb(serial) => super::usb::open(serial.as_deref(), opts.usb_chunk_size),
    }
}

pub fn connect(target: &Target, opts: &ConnectOptions) -> Result<FastbootClient, CliError> {
    let link = open_link(target, opts)?;
    Ok(FastbootClient::new(link).with_timeouts(opts.response_timeout, opts.write_timeout))
}

/// Opens connections to one phone, again and again (after a reboot into fastboot, or to
/// retry). An embedded simulated phone stays the same phone across connections.
pub type Connector = Box<dyn FnMut() -> Result<FastbootClient, CliError> + Send>;

pub fn connector(target: &Target, opts: &ConnectOptions) -> Result<Connector, CliError> {
    let opts = opts.clone();
    match target {
        Target::Sim { profile } => {
            let (handle, store) = embedded_sim(profile, &opts)?;
            log::info!("simulated phone {profile}: store {}", store.display());
            Ok(Box::new(move || {
                Ok(FastbootClient::new(Box::new(handle.connect())).with_timeouts(opts.response_timeout, opts.write_timeout))
            }))
        }
        other => {
            let t = other.clone();
            Ok(Box::new(move || connect(&t, &opts)))
        }
    }
}

/// The target a command should use: `-s`, else `ANDROID_SERIAL` (clap reads it into the
/// same option), else the only USB fastboot device.
pub fn choose(explicit: Option<&Target>) -> Result<Target, CliError> {
    if let Some(t) = explicit {
        return Ok(t.clone());
    }
    let found = super::usb::list()?;
    match found.len() {
        0 => Err(CliError::new("no phone in fastboot mode found").hint(
            "connect the phone with a data cable and start it in fastboot mode (hold Volume down + Power), then run `mi-flash devices`; to try mi-flash without a phone use `-s sim:moonstone`",
        )),
        1 => Ok(Target::Usb(Some(found[0].clone()))),
        _ => Err(CliError::new(format!(
            "{} phones are connected and mi-flash will not guess which one to use: {}",
            found.len(),
            found.join(", ")
        ))
        .hint("choose one with -s SERIAL (or set ANDROID_SERIAL)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_like_aosp() {
        assert_eq!("tcp:127.0.0.1:5555".parse::<Target>().unwrap(), Target::Tcp { host: "127.0.0.1".into(), port: 5555 });
        assert_eq!("tcp:phone".parse::<Target>().unwrap(), Target::Tcp { host: "phone".into(), port: 5554 });
        assert_eq!("sim:moonstone".parse::<Target>().unwrap(), Target::Sim { profile: "moonstone".into() });
        assert_eq!("abc123".parse::<Target>().unwrap(), Target::Usb(Some("abc123".into())));
        assert_eq!("usb:abc123".parse::<Target>().unwrap(), Target::Usb(Some("abc123".into())));
        assert!("sim:".parse::<Target>().is_err());
        assert!("tcp:host:port".parse::<Target>().is_err());
        assert_eq!("udp:127.0.0.1:40000".parse::<Target>().unwrap(), Target::Udp { host: "127.0.0.1".into(), port: 40000 });
        assert_eq!("udp:board".parse::<Target>().unwrap(), Target::Udp { host: "board".into(), port: 5554 });
        assert_eq!(Target::Udp { host: "::1".into(), port: 9 }.to_string(), "udp:[::1]:9");
        assert!("udp:".parse::<Target>().is_err());
    }
}
