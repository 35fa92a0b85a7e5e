//! Memory shared between a process and a worker process it starts: an anonymous file
//! (`memfd_create`) mapped into both, through which an isolated stage's tensors travel
//! without being copied through a pipe.
//!
//! Both sides only copy bytes in and out at given offsets; neither ever holds a reference
//! into the mapping, so the other process writing it can never alias a Rust reference.
//! Which side may touch which bytes when is the protocol's business (the isolated stage
//! writes inputs, then hands over; the worker writes outputs, then hands back).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

/// A shared mapping of `len` bytes over an anonymous file.
#[derive(Debug)]
pub struct SharedMemory {
    file: File,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; access goes through `&self`
// methods that copy with raw pointers, and the process-level protocol keeps writers apart.
unsafe impl Send for SharedMemory {}

impl SharedMemory {
    /// A new anonymous file of `len` bytes (at least 1), mapped. Its descriptor is closed on
    /// `exec`; [`SharedMemory::fd`] is what a child is given (duplicated onto a descriptor
    /// of its own, which survives `exec`).
    ///
    /// # Errors
    ///
    /// The system's error when the file cannot be created, sized or mapped.
    pub fn create(len: usize) -> io::Result<Self> {
        let len = len.max(1);
        // SAFETY: the name is a NUL-terminated string; the call only reads it.
        let fd = unsafe { libc::memfd_create(c"multitpu-stage".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        file.set_len(len as u64)?;
        Self::map(file, len)
    }

    /// Maps `len` bytes of the shared file a parent handed this process as descriptor `fd`.
    /// The descriptor becomes this value's: call it once, for a descriptor nothing else in
    /// the process owns (a worker's, set up by its parent before `exec`).
    ///
    /// # Errors
    ///
    /// The system's error when `fd` is not an open file of at least `len` bytes, or cannot
    /// be mapped.
    pub(crate) fn inherited(fd: i32, len: usize) -> io::Result<Self> {
        // SAFETY: `fcntl(F_GETFD)` only queries the descriptor table.
        if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("descriptor {fd} is not open: this process was not started as a worker"),
            ));
        }
        // SAFETY: the descriptor is open (checked) and, by this function's contract, owned
        // by nothing else in this process.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        Self::open(file, len)
    }

    fn open(file: File, len: usize) -> io::Result<Self> {
        let len = len.max(1);
        if file.metadata()?.len() < len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the shared memory holds fewer than {len} bytes"),
            ));
        }
        Self::map(file, len)
    }

    fn map(file: File, len: usize) -> io::Result<Self> {
        // SAFETY: a fresh shared mapping of an open file of at least `len` bytes; the
        // kernel picks the address, and nothing else refers to the mapping yet.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Self { file, ptr, len })
    }

    /// The descriptor of the file, for a child to map.
    pub fn fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    /// Copies `bytes` into the mapping at `offset`.
    ///
    /// # Panics
    ///
    /// If the range is outside the mapping (the layout is the caller's, fixed up front).
    pub fn write_at(&self, offset: usize, bytes: &[u8]) {
        assert!(
            offset
                .checked_add(bytes.len())
                .is_some_and(|end| end <= self.len),
            "shared memory write of {} bytes at {offset} beyond {}",
            bytes.len(),
            self.len
        );
        // SAFETY: the range is inside the mapping (checked above), `bytes` is a distinct
        // allocation of this process, and no reference into the mapping exists.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr.as_ptr().add(offset),
                bytes.len(),
            );
        }
    }

    /// Copies bytes of the mapping at `offset` into `out`.
    ///
    /// # Panics
    ///
    /// If the range is outside the mapping.
    pub fn read_at(&self, offset: usize, out: &mut [u8]) {
        assert!(
            offset
                .checked_add(out.len())
                .is_some_and(|end| end <= self.len),
            "shared memory read of {} bytes at {offset} beyond {}",
            out.len(),
            self.len
        );
        // SAFETY: as in `write_at`, the other way.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                out.as_mut_ptr(),
                out.len(),
            );
        }
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are the mapping made in `map`, unmapped once here.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_mappings_of_one_file_see_each_other() {
        let a = SharedMemory::create(64).expect("create");
        let file = a.file.try_clone().expect("dup");
        let b = SharedMemory::open(file, 64).expect("map again");
        a.write_at(10, b"hello");
        let mut out = [0u8; 5];
        b.read_at(10, &mut out);
        assert_eq!(&out, b"hello");
        assert!(SharedMemory::open(a.file.try_clone().expect("dup"), 65).is_err());
    }
}
