//! Sv39 tables in memory: mappings, W^X, the user-range check a system call runs
//! before it touches a process's buffer, and the structural check.

use std::collections::HashMap;

use sv39::{AccessError, AddressSpace, Flags, Frames, Leaf, MapError, PAGE_SIZE, Violation};

/// Tables in boxes, at made-up physical addresses.
#[derive(Default)]
struct Memory {
    tables: HashMap<u64, Box<[u64; 512]>>,
    next: u64,
    limit: Option<usize>,
}

impl Frames for Memory {
    fn allocate(&mut self) -> Option<u64> {
        if self.limit.is_some_and(|l| self.tables.len() >= l) {
            return None;
        }
        self.next += PAGE_SIZE;
        let pa = 0x9000_0000 + self.next;
        self.tables.insert(pa, Box::new([0; 512]));
        Some(pa)
    }
    fn table(&self, pa: u64) -> &[u64; 512] {
        &self.tables[&pa]
    }
    fn table_mut(&mut self, pa: u64) -> &mut [u64; 512] {
        self.tables.get_mut(&pa).expect("a table")
    }
}

const RW: Flags = Flags::READ.union(Flags::WRITE);
const RX: Flags = Flags::READ.union(Flags::EXECUTE);
const USER_RW: Flags = RW.union(Flags::USER);
const USER_RX: Flags = RX.union(Flags::USER);

#[test]
fn pages_map_translate_and_unmap() {
    let mut memory = Memory::default();
    let mut space = AddressSpace::new(&mut memory).unwrap();
    space
        .map(
            &mut memory,
            0x4000_0000,
            0x8100_0000,
            3 * PAGE_SIZE,
            USER_RX,
        )
        .unwrap();
    let leaf = space.translate(&memory, 0x4000_1234).unwrap();
    assert_eq!(
        (leaf.va, leaf.pa, leaf.flags),
        (0x4000_1000, 0x8100_1000, USER_RX)
    );
    assert_eq!(space.translate(&memory, 0x4000_3000), None);
    assert_eq!(
        space.map(
            &mut memory,
            0x4000_2000,
            0x8200_0000,
            2 * PAGE_SIZE,
            USER_RW
        ),
        Err(MapError::AlreadyMapped { va: 0x4000_2000 })
    );
    assert_eq!(
        space.translate(&memory, 0x4000_3000),
        None,
        "a refused map leaves the space as it was"
    );
    let mut freed = Vec::new();
    space.unmap(&mut memory, 0x4000_1000, 2 * PAGE_SIZE, |pa| freed.push(pa));
    assert_eq!(freed, [0x8100_1000, 0x8100_2000]);
    assert!(space.translate(&memory, 0x4000_1000).is_none());
    assert!(space.translate(&memory, 0x4000_0000).is_some());
    // The upper half: sign-extended addresses.
    space
        .map(
            &mut memory,
            0xffff_ffc0_0000_0000,
            0x8300_0000,
            PAGE_SIZE,
            RW,
        )
        .unwrap();
    let mut leaves = Vec::new();
    space.leaves(&memory, |leaf| leaves.push(leaf));
    assert_eq!(
        leaves,
        [
            Leaf {
                va: 0x4000_0000,
                pa: 0x8100_0000,
                flags: USER_RX
            },
            Leaf {
                va: 0xffff_ffc0_0000_0000,
                pa: 0x8300_0000,
                flags: RW
            },
        ]
    );
    let satp = space.satp(7);
    assert_eq!(satp >> 60, 8);
    assert_eq!((satp >> 44) & 0xffff, 7);
    assert_eq!((satp & ((1 << 44) - 1)) << 12, space.root());
}

#[test]
fn writable_and_executable_is_refused_as_is_every_malformed_request() {
    let mut memory = Memory::default();
    let mut space = AddressSpace::new(&mut memory).unwrap();
    let wx = RW.union(Flags::EXECUTE);
    assert_eq!(
        space.map(&mut memory, 0x1000, 0x8000_0000, PAGE_SIZE, wx),
        Err(MapError::Permissions),
        "W^X"
    );
    assert_eq!(
        space.map(&mut memory, 0x1000, 0x8000_0000, PAGE_SIZE, Flags::WRITE),
        Err(MapError::Permissions),
        "write without read is reserved"
    );
    assert_eq!(
        space.map(&mut memory, 0x1000, 0x8000_0000, PAGE_SIZE, Flags::USER),
        Err(MapError::Permissions),
        "no access at all"
    );
    assert_eq!(
        space.map(&mut memory, 0x1001, 0x8000_0000, PAGE_SIZE, RW),
        Err(MapError::Misaligned)
    );
    assert_eq!(
        space.map(
            &mut memory,
            0x0000_0040_0000_0000,
            0x8000_0000,
            PAGE_SIZE,
            RW
        ),
        Err(MapError::NonCanonical),
        "bit 38 set without the upper bits"
    );
    assert_eq!(
        space.map(&mut memory, 0x3f_ffff_f000, 0x8000_0000, 2 * PAGE_SIZE, RW),
        Err(MapError::NonCanonical),
        "a range running off the lower half"
    );
    memory.limit = Some(1);
    assert_eq!(
        space.map(&mut memory, 0x1000, 0x8000_0000, PAGE_SIZE, RW),
        Err(MapError::OutOfFrames)
    );
}

#[test]
fn a_system_call_touches_only_the_callers_own_user_pages() {
    let mut memory = Memory::default();
    let mut mine = AddressSpace::new(&mut memory).unwrap();
    let mut theirs = AddressSpace::new(&mut memory).unwrap();
    // My code, my data, a kernel page (no U), and their data.
    mine.map(&mut memory, 0x4000_0000, 0x8100_0000, PAGE_SIZE, USER_RX)
        .unwrap();
    mine.map(
        &mut memory,
        0x5000_0000,
        0x8200_0000,
        2 * PAGE_SIZE,
        USER_RW,
    )
    .unwrap();
    mine.map(
        &mut memory,
        0x8020_0000,
        0x8020_0000,
        PAGE_SIZE,
        RW.union(Flags::GLOBAL),
    )
    .unwrap();
    theirs
        .map(&mut memory, 0x6000_0000, 0x8300_0000, PAGE_SIZE, USER_RW)
        .unwrap();

    assert_eq!(
        mine.check_user_range(&memory, 0x5000_0010, 100, true),
        Ok(())
    );
    assert_eq!(
        mine.check_user_range(&memory, 0x5000_0ff0, 0x20, true),
        Ok(()),
        "across two pages"
    );
    assert_eq!(
        mine.check_user_range(&memory, 0x4000_0000, 16, false),
        Ok(())
    );
    assert_eq!(
        mine.check_user_range(&memory, 0x4000_0000, 16, true),
        Err(AccessError::Permission { va: 0x4000_0000 }),
        "the kernel never writes a process's code"
    );
    assert_eq!(
        mine.check_user_range(&memory, 0x8020_0000, 8, false),
        Err(AccessError::NotUser { va: 0x8020_0000 }),
        "a kernel address"
    );
    assert_eq!(
        mine.check_user_range(&memory, 0x6000_0000, 8, false),
        Err(AccessError::Unmapped { va: 0x6000_0000 }),
        "another process's address"
    );
    assert_eq!(
        mine.check_user_range(&memory, 0x5000_1ff0, 0x20, false),
        Err(AccessError::Unmapped { va: 0x5000_2000 }),
        "running off the end of a mapping"
    );
    assert_eq!(
        mine.check_user_range(&memory, u64::MAX - 7, 16, false),
        Err(AccessError::Wraps),
        "a wrapping range"
    );
    assert_eq!(
        mine.check_user_range(&memory, 0x5000_0000, u64::MAX, false),
        Err(AccessError::Wraps)
    );
    assert_eq!(
        mine.check_user_range(&memory, 0x0000_0040_0000_0000, 1, false),
        Err(AccessError::Wraps),
        "non-canonical"
    );
    assert_eq!(
        mine.check_user_range(&memory, 0x7777_0000, 0, false),
        Ok(()),
        "empty"
    );
}

#[test]
fn the_structural_check_finds_shared_writable_frames_and_stray_windows() {
    let mut memory = Memory::default();
    let mut a = AddressSpace::new(&mut memory).unwrap();
    let mut b = AddressSpace::new(&mut memory).unwrap();
    // Shared read-only code is fine; kernel pages (no U) are not counted.
    for space in [&mut a, &mut b] {
        space
            .map(&mut memory, 0x4000_0000, 0x8100_0000, PAGE_SIZE, USER_RX)
            .unwrap();
        space
            .map(
                &mut memory,
                0x8020_0000,
                0x8020_0000,
                PAGE_SIZE,
                RW.union(Flags::GLOBAL),
            )
            .unwrap();
    }
    a.map(&mut memory, 0x5000_0000, 0x8200_0000, PAGE_SIZE, USER_RW)
        .unwrap();
    b.map(&mut memory, 0x5000_0000, 0x8200_1000, PAGE_SIZE, USER_RW)
        .unwrap();
    a.map(&mut memory, 0x3000_0000, 0x1000_8000, PAGE_SIZE, USER_RW)
        .unwrap();
    let windows = [(0x1000_8000..0x1000_9000, 'a')];
    let spaces = [('a', a), ('b', b)];
    assert_eq!(sv39::violations(&memory, &spaces, &windows), []);
    // b gets a's data frame, and the device window.
    b.map(
        &mut memory,
        0x5000_1000,
        0x8200_0000,
        PAGE_SIZE,
        Flags::READ.union(Flags::USER),
    )
    .unwrap();
    b.map(&mut memory, 0x3000_0000, 0x1000_8000, PAGE_SIZE, USER_RW)
        .unwrap();
    let spaces = [('a', a), ('b', b)];
    let found = sv39::violations(&memory, &spaces, &windows);
    assert!(
        found.contains(&Violation::SharedWritable {
            pa: 0x8200_0000,
            spaces: ('a', 'b')
        }),
        "{found:?}"
    );
    assert!(
        found.contains(&Violation::WindowOutsideHolder {
            pa: 0x1000_8000,
            space: 'b'
        }),
        "{found:?}"
    );
}

#[test]
fn a_process_space_shares_the_kernel_part_and_owns_the_rest() {
    let mut memory = Memory::default();
    let mut kernel = AddressSpace::new(&mut memory).unwrap();
    let global_rx = RX.union(Flags::GLOBAL);
    kernel
        .map(&mut memory, 0x8020_0000, 0x8020_0000, PAGE_SIZE, global_rx)
        .unwrap();
    let mut kernel_tables = Vec::new();
    kernel.table_frames(&memory, |pa| kernel_tables.push(pa));
    let mut process = AddressSpace::sharing(&mut memory, &kernel).unwrap();
    // The kernel's page is there, not for user mode.
    let leaf = process.translate(&memory, 0x8020_0000).unwrap();
    assert_eq!((leaf.pa, leaf.flags), (0x8020_0000, global_rx));
    assert_eq!(
        process.check_user_range(&memory, 0x8020_0000, 8, false),
        Err(AccessError::NotUser { va: 0x8020_0000 })
    );
    // Mapping into the shared gigabyte would change the kernel's tables: refused.
    assert_eq!(
        process.map(&mut memory, 0x8040_0000, 0x9000_0000, PAGE_SIZE, USER_RW),
        Err(MapError::Shared { va: 0x8040_0000 })
    );
    assert!(kernel.translate(&memory, 0x8040_0000).is_none());
    // Its own part: mapped in it alone.
    process
        .map(&mut memory, 0x20_0000_0000, 0x9100_0000, PAGE_SIZE, USER_RW)
        .unwrap();
    assert!(kernel.translate(&memory, 0x20_0000_0000).is_none());
    // Unmapping skips the shared part; its tables are its own, never the kernel's.
    let mut freed = Vec::new();
    process.unmap(&mut memory, 0x8020_0000, PAGE_SIZE, |pa| freed.push(pa));
    assert!(freed.is_empty());
    assert!(kernel.translate(&memory, 0x8020_0000).is_some());
    let mut own = Vec::new();
    process.table_frames(&memory, |pa| own.push(pa));
    assert_eq!(own.len(), 3, "root, middle and leaf table of its own page");
    assert!(own.iter().all(|pa| !kernel_tables.contains(pa)));
}
