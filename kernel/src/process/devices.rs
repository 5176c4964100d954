//! Device windows as capabilities, and the registry of live process spaces.
//!
//! The kernel finds a device's virtio-mmio window (the device tree, the header's
//! device-type register) and keeps it as a capability; it opens no driver for it. A
//! process whose task the manifest grants the capability claims the window: the
//! kernel maps its pages read+write, never executable, into that process alone, and
//! the device's driver runs in the process (`drivers/user-hal`). A window has one
//! holder; it comes back when its holder ends.
//!
//! The registry of live spaces is what the structural check walks: every live
//! process's space and every held window.

use alloc::vec::Vec;
use core::cell::RefCell;
use core::ops::Range;

use critical_section::Mutex;
use ipc::{Capability, CapabilityError};
use sv39::AddressSpace;

use crate::mmu::HeapFrames;

struct Window {
    capability: Capability,
    range: Range<u64>,
    /// The number of the process that holds it.
    holder: Option<u64>,
}

static WINDOWS: Mutex<RefCell<Vec<Window>>> = Mutex::new(RefCell::new(Vec::new()));

/// Whether the disks are settled: the device manager assigned what it could.
static SETTLED: Mutex<core::cell::Cell<bool>> = Mutex::new(core::cell::Cell::new(false));

/// Whether a claim of `capability` must wait for the device manager.
pub fn unsettled(capability: Capability) -> bool {
    capability.disk_serial().is_some() && !critical_section::with(|cs| SETTLED.borrow(cs).get())
}

/// The device manager is done (or gone): a disk capability no window was assigned is
/// absent from now on.
pub fn settle() {
    critical_section::with(|cs| SETTLED.borrow(cs).set(true));
}

/// Why a window could not be assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignError {
    /// The window is not a block device's held by the assigner.
    NotHeld,
    /// Not a disk capability.
    NotADisk,
    /// A window has that capability already.
    Taken,
}

/// Process `holder` (the device manager) hands the block window at physical address
/// `start` on as `capability` (a disk's): nobody holds it until that capability's
/// holder claims it.
///
/// # Errors
/// [`AssignError`]; nothing changes.
pub fn assign(holder: u64, start: u64, capability: Capability) -> Result<(), AssignError> {
    if capability.disk_serial().is_none() {
        return Err(AssignError::NotADisk);
    }
    critical_section::with(|cs| {
        let mut windows = WINDOWS.borrow(cs).borrow_mut();
        if windows.iter().any(|w| w.capability == capability) {
            return Err(AssignError::Taken);
        }
        let window = windows
            .iter_mut()
            .find(|w| {
                w.range.start == start
                    && w.holder == Some(holder)
                    && w.capability == Capability::BlockDevices
            })
            .ok_or(AssignError::NotHeld)?;
        // It leaves the manager's hands: the device forgets the manager's queues.
        reset(&window.range);
        window.capability = capability;
        window.holder = None;
        Ok(())
    })
}

/// Live processes: number and space.
static SPACES: Mutex<RefCell<Vec<(u64, AddressSpace)>>> = Mutex::new(RefCell::new(Vec::new()));

/// Keeps `range` (a device's register window) as the device behind `capability`.
pub fn register(capability: Capability, range: Range<usize>) {
    critical_section::with(|cs| {
        WINDOWS.borrow(cs).borrow_mut().push(Window {
            capability,
            range: range.start as u64..range.end as u64,
            holder: None,
        });
    });
}

/// Hands the window of `capability` to process `holder`.
///
/// # Errors
/// [`CapabilityError::Absent`] when the machine has no such device,
/// [`CapabilityError::AlreadyClaimed`] when a live process holds it.
pub fn take(capability: Capability, holder: u64) -> Result<Range<u64>, CapabilityError> {
    critical_section::with(|cs| {
        let mut windows = WINDOWS.borrow(cs).borrow_mut();
        let mut with = windows.iter_mut().filter(|w| w.capability == capability);
        let Some(first) = with.next() else {
            return Err(CapabilityError::Absent);
        };
        // `block-devices` stands for several windows: each claim takes the next.
        let window = if first.holder.is_none() {
            first
        } else {
            with.find(|w| w.holder.is_none())
                .ok_or(CapabilityError::AlreadyClaimed)?
        };
        window.holder = Some(holder);
        Ok(window.range.clone())
    })
}

/// Gives back every window process `holder` held (it ended), each device reset first:
/// the caller frees the holder's DMA pages after this, and a device still working on
/// them (a faulted driver's request in flight) would write into freed memory.
pub fn release(holder: u64) {
    critical_section::with(|cs| {
        for window in WINDOWS.borrow(cs).borrow_mut().iter_mut() {
            if window.holder == Some(holder) {
                reset(&window.range);
                window.holder = None;
            }
        }
    });
}

/// Resets the device of `range`, and says so on the console when it did not finish.
fn reset(range: &Range<u64>) {
    if !crate::virtio::reset(range) {
        crate::console::line(
            "KERNEL",
            format_args!(
                "virtio-mmio {:#x}: the device did not finish its reset",
                range.start
            ),
        );
    }
}

/// Records a live process's space.
pub fn space_started(number: u64, space: AddressSpace) {
    critical_section::with(|cs| SPACES.borrow(cs).borrow_mut().push((number, space)));
}

/// Forgets an ended process's space.
pub fn space_ended(number: u64) {
    critical_section::with(|cs| {
        SPACES
            .borrow(cs)
            .borrow_mut()
            .retain(|(live, _)| *live != number);
    });
}

/// The structural check over every live process's space: no page writable and
/// executable, no writable frame mapped in two spaces, no device window mapped outside
/// its holder (a window nobody holds may be mapped nowhere). Returns how many spaces
/// it walked, or the first violation and how many there were.
///
/// # Errors
/// A description of the first violation, and the count.
pub fn structural_check() -> Result<usize, (alloc::string::String, usize)> {
    let (spaces, windows) = critical_section::with(|cs| {
        let spaces = SPACES.borrow(cs).borrow().clone();
        let windows: Vec<(Range<u64>, u64)> = WINDOWS
            .borrow(cs)
            .borrow()
            .iter()
            // An unheld window's "holder" is a number no process has.
            .map(|w| (w.range.clone(), w.holder.unwrap_or(u64::MAX)))
            .collect();
        (spaces, windows)
    });
    let found = sv39::violations(&HeapFrames, &spaces, &windows);
    match found.first() {
        None => Ok(spaces.len()),
        Some(first) => Err((alloc::format!("{first:?}"), found.len())),
    }
}
