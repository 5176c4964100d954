//! Finding the virtio-mmio devices: which device sits in each of the device tree's
//! slots, read from the slot's header (magic, version, device id: virtio 1.2, section
//! 4.2.2). That needs no driver, and the kernel has none: each device's window is a
//! capability its holder's user-mode process claims, where the driver runs.

use core::ops::Range;

use crate::console;
use crate::device_tree::Machine;

/// "virt", little-endian: the first register of every virtio-mmio window.
const MAGIC: u32 = 0x7472_6976;
/// The device status register (virtio 1.2, section 4.2.2): writing 0 resets the device.
const STATUS: usize = 0x70;
/// How many times [`reset`] reads the status back before it gives up.
const RESET_POLLS: u32 = 1_000;
/// Device ids (virtio 1.2, section 5).
const NETWORK: u32 = 1;
const BLOCK: u32 = 2;
const ENTROPY: u32 = 4;

/// What probing found.
pub struct Devices {
    /// The slot of the virtio entropy device, if there is one.
    pub entropy: Option<Range<usize>>,
    /// The slots of the block devices, in device-tree order (not an identity: disks
    /// are told apart by serial, by the device manager).
    pub blocks: alloc::vec::Vec<Range<usize>>,
    /// The slot of the network device, if there is one (the first: one holder).
    pub net: Option<Range<usize>>,
}

/// Reads the 32-bit register at `offset` of the window `slot`.
fn register(slot: &Range<usize>, offset: usize) -> u32 {
    // SAFETY: `slot` is a virtio-mmio register window from the device tree, mapped
    // read+write in the kernel's space (mmu.rs maps every slot); the header's first
    // three registers are readable 32-bit registers with no side effect on read.
    unsafe { ((slot.start + offset) as *const u32).read_volatile() }
}

/// Resets the device in the window `slot` (writes 0 to its status register and reads
/// it back until the device says it is done, section 4.2.3.1): the device forgets its
/// queues and stops using the memory they pointed at. The kernel does this when a
/// window leaves its holder, so a device never writes into pages the holder has
/// given back. Returns whether the device finished its reset.
pub fn reset(slot: &Range<u64>) -> bool {
    if slot.end - slot.start < (STATUS + 4) as u64 {
        return false;
    }
    let status = (slot.start as usize + STATUS) as *mut u32;
    // SAFETY: `slot` is a virtio-mmio register window from the device tree, mapped
    // read+write in the kernel's space (mmu.rs maps every slot), and the status
    // register is a 32-bit read-write register of every virtio-mmio device; writing 0
    // is the reset the specification defines.
    unsafe { status.write_volatile(0) };
    (0..RESET_POLLS).any(|_| {
        // SAFETY: as above; reading the status has no side effect.
        unsafe { status.read_volatile() == 0 }
    })
}

/// Probes every virtio-mmio slot of the device tree and reports what it holds.
pub fn probe(machine: &Machine) -> Devices {
    let mut devices = Devices {
        entropy: None,
        blocks: alloc::vec::Vec::new(),
        net: None,
    };
    for slot in machine.virtio_mmio() {
        if slot.len() < 12 || register(&slot, 0) != MAGIC {
            continue;
        }
        let (version, id) = (register(&slot, 4), register(&slot, 8));
        if id == 0 || !(1..=2).contains(&version) {
            continue; // an empty slot has device id 0
        }
        let kind = match id {
            NETWORK => "network",
            BLOCK => "block",
            ENTROPY => "entropy source",
            _ => "other",
        };
        console::line(
            "KERNEL",
            format_args!("virtio-mmio {:#x}: {kind} (device id {id})", slot.start),
        );
        match id {
            ENTROPY if devices.entropy.is_none() => devices.entropy = Some(slot),
            BLOCK => devices.blocks.push(slot),
            NETWORK if devices.net.is_none() => devices.net = Some(slot),
            _ => {}
        }
    }
    devices
}
