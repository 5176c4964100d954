//! The flattened device tree OpenSBI hands over in `a1`, made into a slice only after
//! its header checks out; the reading itself is the portable `device-tree` crate.

pub use device_tree::{DeviceTreeError, Machine};

/// Reads the device tree at `address`.
///
/// # Errors
/// A [`DeviceTreeError`] for a blob the kernel cannot boot with (a null address is
/// reported as a bad magic of 0).
pub fn read(address: usize) -> Result<Machine<'static>, DeviceTreeError> {
    if address == 0 {
        return Err(DeviceTreeError::BadMagic(0));
    }
    // SAFETY: OpenSBI passes the address of the device tree in a1; its first eight
    // bytes (magic and totalsize) are readable RAM. Nothing else is read before the
    // magic is checked.
    let header =
        unsafe { core::ptr::read_unaligned(address as *const [u8; device_tree::HEADER_PEEK]) };
    let len = device_tree::blob_len(header)?;
    // SAFETY: the magic matched and `len` is bounded by device_tree::MAX_BLOB; the
    // firmware placed the blob there, and the kernel never writes to it (the heap
    // excludes it, see Machine::heap_range), so it stays valid and unchanged.
    let blob: &'static [u8] = unsafe { core::slice::from_raw_parts(address as *const u8, len) };
    Machine::parse(blob, address)
}
