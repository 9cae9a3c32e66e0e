// Per-site range statistics: how many activation inputs fall outside [-B, B] (never clipped
// silently) and the largest |x|. The including shader declares
//   var<storage, read_write> range_stats: array<atomic<u32>, 2>;  // [out-of-range count, max |x| bits]
// Statistics are gathered per workgroup and flushed with one global atomic per workgroup: a
// global atomic per element would serialise the whole dispatch. Non-negative floats order like
// their u32 bit patterns, so atomicMax on the bits is a float max.
var<workgroup> wg_out_of_range: atomic<u32>;
var<workgroup> wg_max_bits: atomic<u32>;

fn record_range(x: f32, bound: f32) {
    let a = abs(x);
    if a > bound || a != a {
        atomicAdd(&wg_out_of_range, 1u);
    }
    let bits = bitcast<u32>(a);
    if bits > atomicLoad(&wg_max_bits) {
        atomicMax(&wg_max_bits, bits);
    }
}

// Must be reached by every invocation of the workgroup (uniform control flow).
fn flush_range(local_index: u32) {
    workgroupBarrier();
    if local_index == 0u {
        let count = atomicLoad(&wg_out_of_range);
        if count > 0u {
            atomicAdd(&range_stats[0], count);
        }
        atomicMax(&range_stats[1], atomicLoad(&wg_max_bits));
    }
}
