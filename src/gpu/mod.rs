//! GPU access (wgpu).
