//! Frames from the wire into netstackd's stack (smoltcp, the device glue, the tables).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use ipc::{DeviceError, RawNetDevice, ServiceId};
use netstackd::config::NetConfig;
use netstackd::stack::{MAX_SOCKETS, Stack};
use service_api::netstackd::MAX_SOCKETS_PER_CALLER;

/// A device that delivers the fuzzer's frames and drops what the stack sends.
struct Wire(Rc<RefCell<VecDeque<Vec<u8>>>>);

impl RawNetDevice for Wire {
    fn mac(&self) -> [u8; 6] {
        [0x52, 0x54, 0, 0x12, 0x34, 0x56]
    }
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, DeviceError> {
        match self.0.borrow_mut().pop_front() {
            Some(frame) if frame.len() <= buf.len() => {
                buf[..frame.len()].copy_from_slice(&frame);
                Ok(Some(frame.len()))
            }
            Some(_) | None => Ok(None),
        }
    }
    fn transmit(&mut self, _frame: &[u8]) -> Result<(), DeviceError> {
        Ok(())
    }
    fn reset(&mut self) -> Result<ipc::NetReset, DeviceError> {
        // The wire never fails, so nothing asks for a reset.
        Ok(ipc::NetReset::default())
    }
}

/// The input as frames: a length byte (scaled), then that many bytes, repeatedly.
fn split_frames(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = (usize::from(len) * 6).min(tail.len());
        out.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    out
}

/// Any frames, arriving while dsoftbusd's port listens: the stack never panics and
/// its tables stay within their bounds.
pub fn frames(data: &[u8]) {
    let queue = Rc::new(RefCell::new(VecDeque::new()));
    let mut stack = Stack::new(42, 0);
    stack
        .attach(Wire(Rc::clone(&queue)), NetConfig::default(), 0)
        .expect("a unicast MAC");
    let listener = stack
        .listen(ServiceId::Dsoftbusd, 7411, 4)
        .expect("a free port");
    for (i, frame) in split_frames(data).into_iter().enumerate() {
        queue.borrow_mut().push_back(frame);
        let now = 10 * i as u64;
        stack.poll(now);
        while let Ok(Some(accepted)) = stack.try_accept(ServiceId::Dsoftbusd, listener) {
            let _ = stack.recv(ServiceId::Dsoftbusd, accepted.handle, 2048);
            let _ = stack.send(ServiceId::Dsoftbusd, accepted.handle, b"reply");
            let _ = stack.close(ServiceId::Dsoftbusd, accepted.handle, i % 2 == 0, now);
        }
        let stats = stack.stats();
        assert!(stats.sockets <= MAX_SOCKETS, "{stats:?}");
        assert!(stats.handles <= MAX_SOCKETS_PER_CALLER, "{stats:?}");
    }
}
