//! The frontend against the emulated device (`virtio_net::emulated`): split
//! virtqueues served from memory, a transmit queue the test can stall, and a reset
//! through the status register.

use std::cell::RefCell;
use std::rc::Rc;

use device_deadline::Clock;
use ipc::{DeviceError, NetReset, RawNetDevice};
use virtio_drivers::transport::DeviceType;
use virtio_net::emulated::{DEFAULT_MAC as MAC, Device, Emulated, EmulatedHal as TestHal};
use virtio_net::{ProbeError, RX_BUFFERS, VirtioNet};

/// Time advances 10 µs per reading.
#[derive(Clone, Default)]
struct Ticks(Rc<RefCell<u64>>);

impl Clock for Ticks {
    fn now_us(&self) -> u64 {
        *self.0.borrow_mut() += 10;
        *self.0.borrow()
    }
}

type Net = VirtioNet<TestHal, Emulated, Ticks>;

fn device() -> (Net, Rc<RefCell<Device>>) {
    let state = Rc::new(RefCell::new(Device::default()));
    let net = VirtioNet::new(Emulated(Rc::clone(&state)), Ticks::default(), 5_000).unwrap();
    (net, state)
}

#[test]
fn every_receive_buffer_is_recycled_so_the_queue_never_drains() {
    let (mut net, state) = device();
    assert_eq!(net.mac(), MAC);
    assert_eq!(net.posted(), RX_BUFFERS);
    let mut buf = [0u8; 1514];
    assert_eq!(net.receive(&mut buf), Ok(None), "nothing arrived yet");
    // Ten times the queue's worth of frames, one at a time.
    for i in 0..10 * RX_BUFFERS {
        let frame = vec![i as u8; 60 + i % 1400];
        assert!(
            state.borrow_mut().deliver(&frame),
            "frame {i}: a buffer was posted"
        );
        assert_eq!(net.receive(&mut buf), Ok(Some(frame.len())));
        assert_eq!(&buf[..frame.len()], &frame[..]);
        assert_eq!(net.posted(), RX_BUFFERS);
    }
    // A full queue's worth at once, then read out in order.
    for i in 0..RX_BUFFERS {
        assert!(state.borrow_mut().deliver(&[i as u8; 64]));
    }
    assert!(
        !state.borrow_mut().deliver(&[0; 64]),
        "every buffer is in use"
    );
    for i in 0..RX_BUFFERS {
        assert_eq!(net.receive(&mut buf), Ok(Some(64)));
        assert_eq!(buf[0], i as u8);
    }
    assert_eq!(net.receive(&mut buf), Ok(None));
    assert!(state.borrow_mut().deliver(&[1; 64]), "posted again");
}

#[test]
fn a_frame_longer_than_the_callers_buffer_is_dropped_and_counted() {
    let (mut net, state) = device();
    state.borrow_mut().deliver(&[9; 1000]);
    state.borrow_mut().deliver(&[8; 100]);
    let mut small = [0u8; 500];
    assert_eq!(
        net.receive(&mut small),
        Ok(Some(100)),
        "the long one is skipped"
    );
    assert_eq!(small[0], 8);
    assert_eq!(net.dropped(), 1);
    assert_eq!(net.posted(), RX_BUFFERS);
}

#[test]
fn frames_are_transmitted_with_the_header_stripped_by_the_device() {
    let (mut net, state) = device();
    for i in 0..3 * RX_BUFFERS {
        net.transmit(&[i as u8; 200]).unwrap();
    }
    let sent = state.borrow().transmitted.clone();
    assert_eq!(sent.len(), 3 * RX_BUFFERS);
    assert!(
        sent.iter()
            .enumerate()
            .all(|(i, f)| f == &vec![i as u8; 200])
    );
    assert_eq!(net.transmit(&[]), Err(DeviceError::BadRequest));
    assert_eq!(net.transmit(&[0; 2048]), Err(DeviceError::BadRequest));
}

#[test]
fn a_stalled_transmit_fails_by_the_deadline_and_a_reset_brings_the_device_back() {
    let (mut net, state) = device();
    net.transmit(&[1; 60]).unwrap();
    state.borrow_mut().stalled = true;
    assert_eq!(net.transmit(&[2; 60]), Err(DeviceError::Timeout));
    // A frame arrives that nobody takes before the reset.
    assert!(state.borrow_mut().deliver(&[7; 64]));
    state.borrow_mut().stalled = false;
    assert_eq!(
        net.transmit(&[3; 60]),
        Err(DeviceError::Timeout),
        "not used before a reset"
    );
    let mut buf = [0u8; 100];
    assert_eq!(net.receive(&mut buf), Err(DeviceError::Timeout));
    assert_eq!(
        net.reset(),
        Ok(NetReset {
            transmits_dropped: 1,
            receives_dropped: 1,
        })
    );
    assert_eq!(state.borrow().resets, 1, "the device itself was reset");
    assert_eq!(net.resets(), 1);
    assert_eq!(
        net.posted(),
        RX_BUFFERS,
        "every receive buffer posted again"
    );
    net.transmit(&[4; 60]).unwrap();
    assert!(state.borrow_mut().deliver(&[5; 64]));
    assert_eq!(net.receive(&mut buf), Ok(Some(64)));
    assert_eq!(buf[0], 5);
    let sent = state.borrow().transmitted.clone();
    assert_eq!(
        sent,
        vec![vec![1; 60], vec![4; 60]],
        "the stalled frame was dropped"
    );
}

#[test]
fn a_reset_the_device_does_not_complete_keeps_its_buffers_and_can_be_tried_again() {
    let (mut net, state) = device();
    state.borrow_mut().stalled = true;
    assert_eq!(net.transmit(&[2; 60]), Err(DeviceError::Timeout));
    state.borrow_mut().ignore_resets = 1;
    assert_eq!(net.reset(), Err(DeviceError::Timeout));
    assert_eq!(state.borrow().resets, 0);
    assert_eq!(
        net.posted(),
        RX_BUFFERS,
        "the device still holds its buffers"
    );
    assert_eq!(
        state.borrow().queues_set_up(),
        2,
        "and its queues were not unset under it"
    );
    assert_eq!(net.transmit(&[3; 60]), Err(DeviceError::Timeout));
    assert_eq!(
        net.reset(),
        Ok(NetReset {
            transmits_dropped: 1,
            receives_dropped: 0,
        })
    );
    net.transmit(&[4; 60]).unwrap();
    assert_eq!(state.borrow().transmitted, vec![vec![4; 60]]);
}

#[test]
fn a_device_that_stalls_again_and_again_comes_back_every_time() {
    let (mut net, state) = device();
    let mut buf = [0u8; 100];
    for round in 0..50u8 {
        state.borrow_mut().stalled = true;
        assert_eq!(net.transmit(&[round; 60]), Err(DeviceError::Timeout));
        assert_eq!(net.reset().map(|r| r.transmits_dropped), Ok(1));
        net.transmit(&[round; 61]).unwrap();
        assert!(state.borrow_mut().deliver(&[round; 64]));
        assert_eq!(net.receive(&mut buf), Ok(Some(64)));
        assert_eq!(net.posted(), RX_BUFFERS);
    }
    assert_eq!(state.borrow().resets, 50);
    assert_eq!(state.borrow().transmitted.len(), 50);
}

#[test]
fn a_device_of_another_type_is_refused_before_it_is_touched() {
    let state = Rc::new(RefCell::new(Device::default()));
    state.borrow_mut().block = true;
    let probe = VirtioNet::<TestHal, _, _>::new(Emulated(Rc::clone(&state)), Ticks::default(), 1);
    assert!(matches!(
        probe,
        Err(ProbeError::WrongDevice(DeviceType::Block))
    ));
    assert_eq!(state.borrow().queues_set_up(), 0);
}
