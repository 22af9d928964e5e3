//! Fault injection for the simulated device (a public contract: `--fault SPEC`).
//!
//! `fail-on=CMD[#N]`, `stall-on=CMD[#N]`, `drop-on=CMD[#N]`, `garbage-on=CMD[#N]`,
//! `fail-empty-on=CMD[#N]` (a bare `FAIL`), `info-flood-on=CMD[#N]` (thousands of `INFO`
//! lines, then the real answer), `long-on=CMD[#N]` (a response longer than the protocol's 256
//! bytes) and `data-on=CMD[#N]` (a `DATA` answer where none belongs) act on the Nth command
//! (counted from 1 over the whole life of the simulator) whose wire text starts with CMD;
//! `drop-after-bytes=N` closes the connection once N download bytes have arrived in total.
//! Each fault fires once.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    Fail,
    Stall,
    Drop,
    Garbage,
    FailEmpty,
    InfoFlood,
    Long,
    Data,
}

impl FaultKind {
    fn key(self) -> &'static str {
        match self {
            FaultKind::Fail => "fail-on",
            FaultKind::Stall => "stall-on",
            FaultKind::Drop => "drop-on",
            FaultKind::Garbage => "garbage-on",
            FaultKind::FailEmpty => "fail-empty-on",
            FaultKind::InfoFlood => "info-flood-on",
            FaultKind::Long => "long-on",
            FaultKind::Data => "data-on",
        }
    }

    const ALL: [FaultKind; 8] = [
        FaultKind::Fail,
        FaultKind::Stall,
        FaultKind::Drop,
        FaultKind::Garbage,
        FaultKind::FailEmpty,
        FaultKind::InfoFlood,
        FaultKind::Long,
        FaultKind::Data,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    OnCommand { kind: FaultKind, prefix: String, nth: u32 },
    DropAfterBytes(u64),
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(spec: &str) -> Result<Fault, String> {
        let usage = "expected fail-on=CMD[#N], stall-on=CMD[#N], drop-on=CMD[#N], garbage-on=CMD[#N], fail-empty-on=CMD[#N], info-flood-on=CMD[#N], long-on=CMD[#N], data-on=CMD[#N] or drop-after-bytes=N";
        let (key, value) = spec.split_once('=').ok_or_else(|| format!("fault `{spec}`: {usage}"))?;
        if key == "drop-after-bytes" {
            let n = value.parse().map_err(|_| format!("fault `{spec}`: `{value}` is not a byte count"))?;
            return Ok(Fault::DropAfterBytes(n));
        }
        let kind = FaultKind::ALL
            .into_iter()
            .find(|k| k.key() == key)
            .ok_or_else(|| format!("fault `{spec}`: unknown kind `{key}`; {usage}"))?;
        let (prefix, nth) = match value.rsplit_once('#') {
            Some((p, n)) => {
                let n: u32 = n.parse().map_err(|_| format!("fault `{spec}`: `#{n}` is not a positive count"))?;
                if n == 0 {
                    return Err(format!("fault `{spec}`: counts start at #1"));
                }
                (p, n)
            }
            None => (value, 1),
        };
        if prefix.is_empty() {
            return Err(format!("fault `{spec}`: the command prefix is empty; {usage}"));
        }
        // `getvar#1#2` would count the commands starting with `getvar#1`: none ever does.
        if prefix.contains('#') {
            return Err(format!("fault `{spec}`: one `#N` count at most; {usage}"));
        }
        Ok(Fault::OnCommand { kind, prefix: prefix.to_string(), nth })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::DropAfterBytes(n) => write!(f, "drop-after-bytes={n}"),
            Fault::OnCommand { kind, prefix, nth } => write!(f, "{}={prefix}#{nth}", kind.key()),
        }
    }
}

/// The armed faults of one simulator and the counters that trigger them.
#[derive(Debug, Default)]
pub struct FaultPlan {
    armed: Vec<(Fault, u32, bool)>,
    download_bytes: u64,
}

impl FaultPlan {
    pub fn new(faults: Vec<Fault>) -> FaultPlan {
        FaultPlan { armed: faults.into_iter().map(|f| (f, 0, false)).collect(), download_bytes: 0 }
    }

    /// Called for every command received; returns the fault to act out, if one fires now.
    pub fn on_command(&mut self, wire: &str) -> Option<(FaultKind, Fault)> {
        let mut fired = None;
        for (fault, seen, done) in &mut self.armed {
            if let Fault::OnCommand { kind, prefix, nth } = fault {
                if wire.starts_with(prefix.as_str()) {
                    *seen += 1;
                    if !*done && *seen == *nth && fired.is_none() {
                        *done = true;
                        fired = Some((*kind, fault.clone()));
                    }
                }
            }
        }
        fired
    }

    /// Called as download bytes arrive; returns how many of `n` may be accepted before the
    /// connection must drop (None: no drop now).
    pub fn on_download_bytes(&mut self, n: u64) -> Option<u64> {
        let before = self.download_bytes;
        self.download_bytes += n;
        for (fault, _, done) in &mut self.armed {
            if let Fault::DropAfterBytes(limit) = fault {
                if !*done && self.download_bytes >= *limit {
                    *done = true;
                    return Some(limit.saturating_sub(before));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(
            "fail-on=flash:super#2".parse::<Fault>().unwrap(),
            Fault::OnCommand { kind: FaultKind::Fail, prefix: "flash:super".into(), nth: 2 }
        );
        assert_eq!(
            "stall-on=getvar".parse::<Fault>().unwrap(),
            Fault::OnCommand { kind: FaultKind::Stall, prefix: "getvar".into(), nth: 1 }
        );
        assert_eq!("drop-after-bytes=1048576".parse::<Fault>().unwrap(), Fault::DropAfterBytes(1 << 20));
        for kind in FaultKind::ALL {
            let spec = format!("{}=flash:cust#3", kind.key());
            let f: Fault = spec.parse().unwrap();
            assert_eq!(f, Fault::OnCommand { kind, prefix: "flash:cust".into(), nth: 3 });
            assert_eq!(f.to_string(), spec);
        }
        for bad in ["fail-on", "explode-on=x", "fail-on=#2", "fail-on=x#0", "drop-after-bytes=lots", "stall-on=x#y", "stall-on=getvar#1#2"] {
            assert!(bad.parse::<Fault>().is_err(), "{bad}");
        }
    }

    #[test]
    fn fires_once_on_the_nth_match() {
        let mut p = FaultPlan::new(vec!["fail-on=flash:boot#2".parse().unwrap()]);
        assert!(p.on_command("flash:boot_a").is_none());
        assert!(p.on_command("getvar:product").is_none());
        assert_eq!(p.on_command("flash:boot_b").map(|f| f.0), Some(FaultKind::Fail));
        assert!(p.on_command("flash:boot").is_none());
    }

    #[test]
    fn drop_after_bytes_counts_across_downloads() {
        let mut p = FaultPlan::new(vec![Fault::DropAfterBytes(100)]);
        assert_eq!(p.on_download_bytes(60), None);
        assert_eq!(p.on_download_bytes(60), Some(40));
        assert_eq!(p.on_download_bytes(60), None);
    }
}
