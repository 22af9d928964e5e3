//! Fastboot responses and commands from a device or host that may send anything.
//!
//! Input layout (so that hand-written seeds stay readable):
//! * byte 0: which client call runs (`getvar`, `getvar_opt`, `download`, `getvar:all`, `upload`);
//! * byte 1: length of the download (1..=256 bytes);
//! * the rest: the packets the device sends, separated by `\n`.
//!
//! The whole input is also parsed as one response packet and as one command packet, and
//! whatever parses must survive an encode/parse round trip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mi_flash::fastboot::codec::{Command, Response, MAX_RESPONSE_LEN};
use mi_flash::fastboot::FastbootClient;
use mi_flash::transport::mock::{Exchange, MockTransport};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    codec_round_trips(data);
    if data.len() < 2 {
        return;
    }
    let (op, len) = (data[0] % 5, data[1] as usize + 1);
    let packets: Vec<&[u8]> = data[2..].split(|&b| b == b'\n').collect();
    for p in &packets {
        codec_round_trips(p);
    }
    drive_client(op, len, &packets);
});

fn codec_round_trips(packet: &[u8]) {
    if let Ok(r) = Response::parse(packet) {
        let wire = r.encode();
        assert!(wire.len() <= MAX_RESPONSE_LEN, "encoded response longer than 256 bytes");
        let fits = match &r {
            Response::Okay(s) | Response::Fail(s) | Response::Info(s) | Response::Text(s) => s.len() <= MAX_RESPONSE_LEN - 4,
            Response::Data(_) => true,
        };
        if fits {
            assert_eq!(Response::parse(&wire).as_ref(), Ok(&r), "response does not survive encode/parse");
        }
    }
    if let Ok(c) = Command::parse(packet) {
        let wire = c.to_wire();
        assert_eq!(Command::parse(wire.as_bytes()).as_ref(), Ok(&c), "command does not survive to_wire/parse");
        // What the host may send must be what the device understands.
        if let Ok(bytes) = c.encode() {
            assert_eq!(bytes, wire.as_bytes());
        }
    }
}

fn drive_client(op: u8, len: usize, packets: &[&[u8]]) {
    let device = |script: &mut Vec<Exchange>| script.extend(packets.iter().map(|p| Exchange::DeviceSends(p.to_vec())));
    let mut script = Vec::new();
    let image = vec![0x5au8; len];
    match op {
        0 | 1 => {
            script.push(Exchange::HostWrites(b"getvar:product".to_vec()));
            device(&mut script);
        }
        2 => {
            script.push(Exchange::HostWrites(format!("download:{len:08x}").into_bytes()));
            // The image goes out right after the first final response, if that is the DATA the
            // client asked for; any other answer ends the call before the data phase.
            let mut waiting = true;
            for p in packets {
                script.push(Exchange::DeviceSends(p.to_vec()));
                if !waiting || p.is_empty() {
                    continue;
                }
                match Response::parse(p) {
                    Ok(Response::Info(_)) | Ok(Response::Text(_)) => {}
                    Ok(Response::Data(n)) if n as usize == len => {
                        script.push(Exchange::HostWrites(image.clone()));
                        waiting = false;
                    }
                    _ => waiting = false,
                }
            }
        }
        3 => {
            script.push(Exchange::HostWrites(b"getvar:all".to_vec()));
            device(&mut script);
        }
        _ => {
            script.push(Exchange::HostWrites(b"upload".to_vec()));
            device(&mut script);
        }
    }
    let mock = MockTransport::new(script);
    let mut client = FastbootClient::new(Box::new(mock.clone()));
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    client.on_message(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let lines = packets.len();
    let sent: usize = packets.iter().map(|p| p.len()).sum();
    match op {
        0 => drop(client.getvar("product")),
        1 => drop(client.getvar_opt("product")),
        2 => drop(client.download(&image)),
        3 => {
            if let Ok(vars) = client.getvar_all() {
                assert!(vars.len() <= lines, "getvar:all returned more variables than lines sent");
            }
        }
        _ => {
            if let Ok(bytes) = client.upload() {
                assert!(bytes.len() <= sent, "upload returned more bytes than were sent");
            }
        }
    }
    assert!(seen.load(Ordering::Relaxed) <= lines, "more device messages than packets");
}
