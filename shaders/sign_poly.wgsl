// Composite odd polynomial p_k ∘ … ∘ p_1 ≈ sign(x), read from the coefficient buffer
// `poly_coeffs` that the including shader declares. One kernel serves every α: only the buffer
// changes. Layout: poly_coeffs[0] = number of stages, poly_coeffs[1] = 0.0 (a zero the
// compiler cannot see, see `opaque`), then one record per stage:
//   [n, scale_hi, scale_lo, c_0 … c_(n-1) (high words), c_0 … c_(n-1) (low words)]
// SCHEME_HORNER:      c_k multiplies x^(2k+1) (power basis, as the paper's published files);
//                     scale = 1. Horner in x² with fma. Unstable in float32 at high α.
// SCHEME_CLENSHAW:    c_k multiplies T_(2k+1)(t), t = x·scale = x/b on the stage's own domain
//                     [-b, b]. Odd Clenshaw: with 2u = 4t²−2, b_k = c_k + 2u·b_(k+1) − b_(k+2),
//                     p = t·(b_0 − b_1). Coefficients stay O(1): float32 keeps the bound to α≈16.
// SCHEME_CLENSHAW_DF: the same recurrence in double-float (value = hi + lo, ~48 bits) with
//                     error-free sums and fma products; stage values stay double-float from
//                     stage to stage. ~10x the flops; keeps the bound to α = 20.
const SCHEME_HORNER: u32 = 0u;
const SCHEME_CLENSHAW: u32 = 1u;
const SCHEME_CLENSHAW_DF: u32 = 2u;

fn stage_horner(x: f32, at: u32, n: u32) -> f32 {
    let t = x * poly_coeffs[at + 1u];
    let t2 = t * t;
    let c = at + 3u;
    var acc = poly_coeffs[c + n - 1u];
    for (var k = n - 1u; k > 0u; k--) {
        acc = fma(acc, t2, poly_coeffs[c + k - 1u]);
    }
    return t * acc;
}

fn stage_clenshaw(x: f32, at: u32, n: u32) -> f32 {
    let t = x * poly_coeffs[at + 1u];
    let two_u = fma(4.0 * t, t, -2.0);
    let c = at + 3u;
    var b1 = 0.0;
    var b2 = 0.0;
    for (var k = n; k > 0u; k--) {
        let b0 = fma(two_u, b1, poly_coeffs[c + k - 1u] - b2);
        b2 = b1;
        b1 = b0;
    }
    return t * (b1 - b2);
}

// ---- double-float arithmetic: vec2(hi, lo), |lo| ≤ ulp(hi)/2 ----
// Shader compilers may simplify float expressions algebraically (Mesa's NIR does so for ops
// not marked exact, and WGSL cannot mark them), which turns the rounding error that an
// error-free transformation computes into 0. Adding a zero read from the buffer makes each
// intermediate opaque, so no identity such as (a + b) − a = b can be applied.
fn opaque(x: f32) -> f32 {
    return x + poly_coeffs[1];
}

fn df_two_sum(a: f32, b: f32) -> vec2<f32> {
    let s = opaque(a + b);
    let bb = opaque(s - a);
    return vec2<f32>(s, opaque(a - opaque(s - bb)) + (b - bb));
}

fn df_add(x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
    let s = df_two_sum(x.x, y.x);
    let t = df_two_sum(x.y, y.y);
    let u = df_two_sum(s.x, s.y + t.x);
    return df_two_sum(u.x, u.y + t.y);
}

fn df_mul(x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
    let p = opaque(x.x * y.x);
    let e = fma(x.x, y.x, -p) + (x.x * y.y + x.y * y.x);
    return df_two_sum(p, e);
}

fn stage_clenshaw_df(x: vec2<f32>, at: u32, n: u32) -> vec2<f32> {
    let t = df_mul(x, vec2<f32>(poly_coeffs[at + 1u], poly_coeffs[at + 2u]));
    let t2 = df_mul(t, t);
    let two_u = df_add(4.0 * t2, vec2<f32>(-2.0, 0.0));
    let c = at + 3u;
    var b1 = vec2<f32>(0.0, 0.0);
    var b2 = vec2<f32>(0.0, 0.0);
    for (var k = n; k > 0u; k--) {
        let coeff = vec2<f32>(poly_coeffs[c + k - 1u], poly_coeffs[c + n + k - 1u]);
        let b0 = df_add(df_add(df_mul(two_u, b1), coeff), -b2);
        b2 = b1;
        b1 = b0;
    }
    return df_mul(t, df_add(b1, -b2));
}

fn sign_poly(x_in: f32, scheme: u32) -> f32 {
    let stages = u32(poly_coeffs[0]);
    var at = 2u;
    var x = x_in;
    var xdf = vec2<f32>(x_in, 0.0);
    for (var s = 0u; s < stages; s++) {
        let n = u32(poly_coeffs[at]);
        if scheme == SCHEME_HORNER {
            x = stage_horner(x, at, n);
        } else if scheme == SCHEME_CLENSHAW {
            x = stage_clenshaw(x, at, n);
        } else {
            xdf = stage_clenshaw_df(xdf, at, n);
        }
        at += 3u + 2u * n;
    }
    if scheme == SCHEME_CLENSHAW_DF {
        return xdf.x + xdf.y;
    }
    return x;
}

// The paper's approximate ReLU: x(1 + p(x/B))/2 (x already clamped where the site clamps).
fn approx_relu(x: f32, bound: f32, scheme: u32) -> f32 {
    return 0.5 * x * (1.0 + sign_poly(x / bound, scheme));
}
