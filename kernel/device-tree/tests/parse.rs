//! The device-tree reader on QEMU 7.2's own `virt` tree and on trees built with
//! `vm-fdt` to hold exactly the defect under test.

use device_tree::{DeviceTreeError, HEAP_MAX, Machine, blob_len};
use vm_fdt::{FdtReserveEntry, FdtWriter};

/// `qemu-system-riscv64 -machine virt,dumpdtb=... -m 128M` (QEMU 7.2), trimmed to its
/// `totalsize` of 4,222 bytes.
const QEMU_VIRT: &[u8] = include_bytes!("qemu-7.2-virt.dtb");

fn header(blob: &[u8]) -> [u8; 8] {
    blob[..8].try_into().unwrap()
}

#[test]
fn qemu_virt_parses_to_the_machine_qemu_describes() {
    let at = 0x8700_0000;
    let machine = Machine::parse(QEMU_VIRT, at).unwrap();
    assert_eq!(blob_len(header(QEMU_VIRT)), Ok(QEMU_VIRT.len()));
    assert_eq!(machine.memory, 0x8000_0000..0x8800_0000);
    assert_eq!(machine.blob, at..at + QEMU_VIRT.len());
    assert_eq!(machine.timebase_hz, 10_000_000);
    assert_eq!(machine.uart, Some(0x1000_0000));
    assert_eq!(machine.test_finisher, Some(0x10_0000));
    assert!(machine.sstc, "rv64imafdch_..._sstc");
    assert_eq!(machine.virtio_mmio().count(), 8);
    assert!(machine.virtio_mmio().all(|slot| slot.len() == 0x1000));
    let heap = machine.heap_range(0x8120_0000);
    assert_eq!(heap, 0x8120_0000..0x8120_0000 + HEAP_MAX);
}

#[test]
fn the_magic_is_checked_before_totalsize_is_believed() {
    // A huge totalsize behind a wrong magic: refused for the magic, size unread.
    assert_eq!(
        blob_len([0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff, 0xff]),
        Err(DeviceTreeError::BadMagic(0xdead_beef))
    );
    let mut huge = header(QEMU_VIRT);
    huge[4..].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
    assert_eq!(blob_len(huge), Err(DeviceTreeError::BadSize(0x7fff_ffff)));
    let mut tiny = header(QEMU_VIRT);
    tiny[4..].copy_from_slice(&8u32.to_be_bytes());
    assert_eq!(blob_len(tiny), Err(DeviceTreeError::BadSize(8)));
}

/// A minimal tree: root cells of two, one cpu with `cpu_props`, `memory` if given,
/// a `/chosen` with bootargs, and whatever `extra` adds.
fn tree(
    memory: Option<(u64, u64)>,
    timebase: Option<u32>,
    reservations: &[FdtReserveEntry],
    extra: impl FnOnce(&mut FdtWriter),
) -> Vec<u8> {
    let mut fdt = FdtWriter::new_with_mem_reserv(reservations).unwrap();
    let root = fdt.begin_node("").unwrap();
    fdt.property_u32("#address-cells", 2).unwrap();
    fdt.property_u32("#size-cells", 2).unwrap();
    let cpus = fdt.begin_node("cpus").unwrap();
    fdt.property_u32("#address-cells", 1).unwrap();
    fdt.property_u32("#size-cells", 0).unwrap();
    if let Some(hz) = timebase {
        fdt.property_u32("timebase-frequency", hz).unwrap();
    }
    let cpu = fdt.begin_node("cpu@0").unwrap();
    fdt.property_string("device_type", "cpu").unwrap();
    fdt.property_u32("reg", 0).unwrap();
    fdt.end_node(cpu).unwrap();
    fdt.end_node(cpus).unwrap();
    if let Some((start, size)) = memory {
        let node = fdt.begin_node(&format!("memory@{start:x}")).unwrap();
        fdt.property_string("device_type", "memory").unwrap();
        fdt.property_array_u64("reg", &[start, size]).unwrap();
        fdt.end_node(node).unwrap();
    }
    let chosen = fdt.begin_node("chosen").unwrap();
    fdt.property_string("bootargs", "bench").unwrap();
    fdt.end_node(chosen).unwrap();
    extra(&mut fdt);
    fdt.end_node(root).unwrap();
    fdt.finish().unwrap()
}

const MEMORY: Option<(u64, u64)> = Some((0x8000_0000, 0x0800_0000));
const TIMEBASE: Option<u32> = Some(10_000_000);

#[test]
fn a_well_formed_minimal_tree_parses() {
    let blob = tree(MEMORY, TIMEBASE, &[], |_| {});
    let machine = Machine::parse(&blob, 0x8700_0000).unwrap();
    assert_eq!(machine.bootargs, "bench");
    assert_eq!(machine.uart, None);
    assert_eq!(machine.virtio_mmio().count(), 0);
}

#[test]
fn missing_memory_or_timebase_is_an_error_not_a_panic() {
    let no_memory = tree(None, TIMEBASE, &[], |_| {});
    assert_eq!(
        Machine::parse(&no_memory, 0),
        Err(DeviceTreeError::NoMemory)
    );
    let no_timebase = tree(MEMORY, None, &[], |_| {});
    assert_eq!(
        Machine::parse(&no_timebase, 0),
        Err(DeviceTreeError::NoTimebase)
    );
    let zero_timebase = tree(MEMORY, Some(0), &[], |_| {});
    assert_eq!(
        Machine::parse(&zero_timebase, 0),
        Err(DeviceTreeError::NoTimebase)
    );
    let no_chosen = {
        let mut fdt = FdtWriter::new().unwrap();
        let root = fdt.begin_node("").unwrap();
        fdt.property_u32("#address-cells", 2).unwrap();
        fdt.property_u32("#size-cells", 2).unwrap();
        fdt.end_node(root).unwrap();
        fdt.finish().unwrap()
    };
    assert_eq!(
        Machine::parse(&no_chosen, 0),
        Err(DeviceTreeError::NoMemory),
        "no /chosen and no /memory: the error the reader documents"
    );
    assert_eq!(
        Machine::parse(&QEMU_VIRT[..100], 0),
        Err(DeviceTreeError::Malformed)
    );
}

#[test]
fn ranges_that_wrap_the_address_space_are_refused() {
    let wrapping_memory = tree(Some((u64::MAX - 0xfff, 0x2000)), TIMEBASE, &[], |_| {});
    assert_eq!(
        Machine::parse(&wrapping_memory, 0),
        Err(DeviceTreeError::Overflow("memory"))
    );
    let blob = tree(MEMORY, TIMEBASE, &[], |_| {});
    assert_eq!(
        Machine::parse(&blob, usize::MAX - 16),
        Err(DeviceTreeError::Overflow("device tree blob"))
    );
    let wrapping_reservation = tree(
        MEMORY,
        TIMEBASE,
        &[],
        reserved_memory(&[(u64::MAX - 1, 0x1000)]),
    );
    assert_eq!(
        Machine::parse(&wrapping_reservation, 0),
        Err(DeviceTreeError::Overflow("reserved memory"))
    );
}

fn reserved_memory(regions: &[(u64, u64)]) -> impl FnOnce(&mut FdtWriter) + '_ {
    move |fdt| {
        let node = fdt.begin_node("reserved-memory").unwrap();
        fdt.property_u32("#address-cells", 2).unwrap();
        fdt.property_u32("#size-cells", 2).unwrap();
        fdt.property_null("ranges").unwrap();
        for (i, (start, size)) in regions.iter().enumerate() {
            let child = fdt.begin_node(&format!("region{i}@{start:x}")).unwrap();
            fdt.property_array_u64("reg", &[*start, *size]).unwrap();
            fdt.end_node(child).unwrap();
        }
        fdt.end_node(node).unwrap();
    }
}

#[test]
fn the_heap_avoids_reserved_memory_and_the_reservation_block() {
    let image_end = 0x8120_0000;
    // A /reserved-memory region 1 MiB above the image, and a memreserve entry at
    // 8 MiB: the heap is the largest free stretch, above both.
    let blob = tree(
        MEMORY,
        TIMEBASE,
        &[FdtReserveEntry::new(0x8200_0000, 0x1000).unwrap()],
        reserved_memory(&[(0x8130_0000, 0x10_0000)]),
    );
    let machine = Machine::parse(&blob, 0x87f0_0000).unwrap();
    assert_eq!(machine.reserved().count(), 2);
    let heap = machine.heap_range(image_end);
    for excluded in machine.reserved().chain([machine.blob.clone()]) {
        assert!(
            heap.end <= excluded.start || heap.start >= excluded.end,
            "heap {heap:x?} overlaps {excluded:x?}"
        );
    }
    assert_eq!(heap, 0x8200_1000..0x8320_0000);
}

#[test]
fn the_heap_avoids_the_blob_wherever_it_lies() {
    let image_end = 0x8120_0000;
    let blob = tree(MEMORY, TIMEBASE, &[], |_| {});
    // The blob starts below the heap's start and reaches into it: the old reader
    // only excluded a blob that started above the heap's start.
    let straddling = image_end - 0x100;
    let machine = Machine::parse(&blob, straddling).unwrap();
    let heap = machine.heap_range(image_end);
    assert!(
        heap.start >= machine.blob.end,
        "heap {heap:x?} blob {:x?}",
        machine.blob
    );
    // Entirely inside the window: the heap takes the larger side.
    let inside = image_end + 0x10_0000;
    let machine = Machine::parse(&blob, inside).unwrap();
    let heap = machine.heap_range(image_end);
    assert!(heap.start >= machine.blob.end || heap.end <= machine.blob.start);
    assert!(heap.len() > HEAP_MAX / 2);
    // Nothing free at all: an empty heap, not one over the blob.
    let machine = Machine::parse(&blob, 0x8000_0000).unwrap();
    assert!(machine.heap_range(0x8800_0000).is_empty());
}

#[test]
fn too_many_reservations_are_refused() {
    let regions: Vec<(u64, u64)> = (0..17)
        .map(|i| (0x8400_0000 + i * 0x1000, 0x1000))
        .collect();
    let blob = tree(MEMORY, TIMEBASE, &[], reserved_memory(&regions));
    assert_eq!(
        Machine::parse(&blob, 0),
        Err(DeviceTreeError::TooManyReservations)
    );
}

#[test]
fn the_initrd_is_read_from_chosen_and_kept_out_of_the_heap() {
    let with_initrd = |start: u64, end: u64, wide: bool| {
        let mut fdt = FdtWriter::new().unwrap();
        let root = fdt.begin_node("").unwrap();
        fdt.property_u32("#address-cells", 2).unwrap();
        fdt.property_u32("#size-cells", 2).unwrap();
        let cpus = fdt.begin_node("cpus").unwrap();
        fdt.property_u32("timebase-frequency", 10_000_000).unwrap();
        let cpu = fdt.begin_node("cpu@0").unwrap();
        fdt.property_string("device_type", "cpu").unwrap();
        fdt.end_node(cpu).unwrap();
        fdt.end_node(cpus).unwrap();
        let node = fdt.begin_node("memory@80000000").unwrap();
        fdt.property_string("device_type", "memory").unwrap();
        fdt.property_array_u64("reg", &[0x8000_0000, 0x0800_0000])
            .unwrap();
        fdt.end_node(node).unwrap();
        let chosen = fdt.begin_node("chosen").unwrap();
        if wide {
            fdt.property_u64("linux,initrd-start", start).unwrap();
            fdt.property_u64("linux,initrd-end", end).unwrap();
        } else {
            fdt.property_u32("linux,initrd-start", start as u32)
                .unwrap();
            fdt.property_u32("linux,initrd-end", end as u32).unwrap();
        }
        fdt.end_node(chosen).unwrap();
        fdt.end_node(root).unwrap();
        fdt.finish().unwrap()
    };
    // QEMU 7.2 writes 64-bit cells; a 32-bit pair reads the same.
    for wide in [true, false] {
        let blob = with_initrd(0x8140_0000, 0x8148_0000, wide);
        let machine = Machine::parse(&blob, 0x87f0_0000).unwrap();
        assert_eq!(machine.initrd, Some(0x8140_0000..0x8148_0000));
        let heap = machine.heap_range(0x8120_0000);
        assert!(
            heap.start >= 0x8148_0000 || heap.end <= 0x8140_0000,
            "heap {heap:x?} overlaps the initrd"
        );
    }
    let backwards = with_initrd(0x8148_0000, 0x8140_0000, true);
    assert_eq!(
        Machine::parse(&backwards, 0x87f0_0000),
        Err(DeviceTreeError::Overflow("initrd"))
    );
    let blob = tree(MEMORY, TIMEBASE, &[], |_| {});
    assert_eq!(Machine::parse(&blob, 0).unwrap().initrd, None);
}
