//! Inputs the fuzz targets (fuzz/, see docs/fuzzing.md) found to crash, hang or allocate too
//! much, replayed through the public API so the fixes stay fixed. Each test names the target
//! that found the input.
//!
//! This test binary counts the largest single allocation (a wrapper around the system
//! allocator), because "no absurd allocation" cannot be seen from a result: on Linux a 4 GiB
//! zeroed allocation succeeds lazily and the test would pass without the fix.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use mi_flash::fastboot::{FastbootClient, FastbootError};
use mi_flash::transport::mock::{Exchange, MockTransport};
use mi_flash::transport::TransportError;

struct LargestAllocation;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// No test in this file needs more than this in one allocation; tests run in parallel, so the
/// bound is shared and generous.
const ALLOCATION_BOUND: usize = 64 << 20;

fn assert_no_absurd_allocation(what: &str) {
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(largest <= ALLOCATION_BOUND, "{what}: one allocation of {largest} bytes");
}

/// fastboot_response: a device answering `upload` with `DATA90000030` (the input found:
/// `04 00 "DATA90000030" 00 0a 0a 41 04`) made the client allocate 2.25 GiB before reading a
/// byte; `DATAffffffff` asks for 4 GiB. It must read what arrives and fail when the link
/// closes.
#[test]
fn upload_with_a_huge_announced_length_allocates_what_arrives() {
    for announced in [&b"DATA90000030\0"[..], b"DATAffffffff"] {
        let mock = MockTransport::new([
            Exchange::HostWrites(b"upload".to_vec()),
            Exchange::DeviceSends(announced.to_vec()),
            Exchange::DeviceSends(b"A\x04".to_vec()),
            Exchange::Disconnect,
        ]);
        let err = FastbootClient::new(Box::new(mock.clone())).upload().unwrap_err();
        assert!(
            matches!(err, FastbootError::Transport { source: TransportError::Closed, .. }),
            "{err}"
        );
        assert_no_absurd_allocation(&String::from_utf8_lossy(announced));
        mock.assert_done();
    }
}

/// The same data phase, complete and in several packets, still arrives whole (the fix reads
/// in bounded pieces).
#[test]
fn upload_reads_a_data_phase_split_over_packets() {
    let mock = MockTransport::new([
        Exchange::HostWrites(b"upload".to_vec()),
        Exchange::DeviceSends(b"DATA00000007".to_vec()),
        Exchange::DeviceSends(b"abc".to_vec()),
        Exchange::DeviceSends(Vec::new()),
        Exchange::DeviceSends(b"defg".to_vec()),
        Exchange::DeviceSends(b"OKAY".to_vec()),
    ]);
    let data = FastbootClient::new(Box::new(mock.clone())).upload().unwrap();
    assert_eq!(data, b"abcdefg");
    mock.assert_done();
}
