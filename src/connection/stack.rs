//! A reader gives back the stack its opening used.
//!
//! A thread's stack is memory only where it has been touched, and it stays
//! touched: the deepest the thread ever went is what it costs from then on.
//! A reader goes deepest once, while it opens the connection (the HTTP
//! head, the route, the room's admission, log lines), and then mostly
//! sleeps in a shallow `read` for as long as the client stays. Measured on
//! 2,000 idle connections: the opening left 28 KiB of stack resident per
//! reader, more than all the rest of an idle connection together.
//!
//! So once the connection is open, the reader tells the kernel that the
//! pages below the frame it is in hold nothing it needs
//! (`madvise(MADV_DONTNEED)`): they are given back now, and handed out
//! again, zeroed, only if the thread goes that deep again (a message to
//! parse). One system call per connection at its opening, and one each
//! time it falls quiet (`idle.rs`).
//!
//! The alternative rejected: a smaller stack. It would bound how deep a
//! reader may go (a JSON message nested 128 levels, a debug build), not how
//! much of it an idle one keeps.

use std::cell::Cell;
use std::mem::MaybeUninit;

use crate::config::STACK_KEPT_BELOW;

/// Gives back the pages of this thread's stack below the caller's frame,
/// keeping `STACK_KEPT_BELOW` bytes under this function's own locals for
/// the rest of its frame and the `madvise` call.
#[inline(never)]
pub(super) fn give_back_below_here() {
    let marker = 0u8;
    let here = std::ptr::addr_of!(marker) as usize;
    let Some(lowest) = stack_lowest() else {
        return;
    };
    // SAFETY: sysconf only reads a system constant.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    // The rest of this function's frame, and the `madvise` call below it,
    // fit in `STACK_KEPT_BELOW`: the page that reaches into stays.
    let end = here.saturating_sub(STACK_KEPT_BELOW) & !(page - 1);
    let start = (lowest + page - 1) & !(page - 1);
    if end > start {
        // SAFETY: [start, end) lies within this thread's own stack, below
        // every live frame: the stack grows down from above `here`, and
        // what this function and `madvise` still use lies within
        // `STACK_KEPT_BELOW` of it. Nothing there is in use, and what is
        // given back reads as zeros if touched again.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

thread_local! {
    /// This thread's `stack_lowest`, once asked (0: not yet). glibc's
    /// answer allocates and frees on every call, and what this thread frees
    /// stays in its allocator cache for as long as it lives.
    static LOWEST: Cell<usize> = const { Cell::new(0) };
}

/// The lowest address of this thread's stack, from glibc, asked once.
fn stack_lowest() -> Option<usize> {
    let known = LOWEST.get();
    if known != 0 {
        return Some(known);
    }
    let lowest = ask_glibc_for_stack_lowest()?;
    LOWEST.set(lowest);
    Some(lowest)
}

fn ask_glibc_for_stack_lowest() -> Option<usize> {
    let mut attr = MaybeUninit::<libc::pthread_attr_t>::uninit();
    let mut address: *mut libc::c_void = std::ptr::null_mut();
    let mut size: libc::size_t = 0;
    // SAFETY: the attribute is initialised by pthread_getattr_np before it
    // is read, and destroyed after.
    unsafe {
        if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
            return None;
        }
        let got = libc::pthread_attr_getstack(attr.as_ptr(), &mut address, &mut size);
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        (got == 0 && size > 0).then_some(address as usize)
    }
}
