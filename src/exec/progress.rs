//! How long-running library work tells its caller how far it got, without printing: the binary
//! draws a progress bar from these calls, a program using the library may ignore them.

/// Progress of one pass over a known number of items (images).
pub trait Progress: Sync {
    /// A pass called `title` over `total` items begins.
    fn start(&self, title: &str, total: u64);
    /// `n` more items are done.
    fn advance(&self, n: u64);
    /// The pass is over.
    fn finish(&self);
}

/// Progress nobody watches.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}
