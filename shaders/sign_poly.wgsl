// Composite odd polynomial p_k ∘ … ∘ p_1 ≈ sign(x), read from the coefficient buffer
// `poly_coeffs` that the including shader declares. One kernel serves every α: only the buffer
// changes. Layout: poly_coeffs[0] = number of stages, then one record per stage:
//   [n_terms, input_scale, c_0, …, c_{n_terms-1}]
// SCHEME_HORNER:   c_k multiplies x^(2k+1) (power basis, as the paper's published files);
//                  input_scale = 1. Horner in x² with fma.
// SCHEME_CLENSHAW: c_k multiplies T_(2k+1)(t), t = x·input_scale = x/b on the stage's own
//                  domain [-b, b]. Odd Clenshaw: with 2u = 4t²-2, b_k = c_k + 2u·b_(k+1) − b_(k+2),
//                  p = t·(b_0 − b_1). Coefficients stay O(1), so float32 keeps the bound.
const SCHEME_HORNER: u32 = 0u;
const SCHEME_CLENSHAW: u32 = 1u;

fn sign_poly(x_in: f32, scheme: u32) -> f32 {
    var x = x_in;
    let stages = u32(poly_coeffs[0]);
    var at = 1u;
    for (var s = 0u; s < stages; s++) {
        let n = u32(poly_coeffs[at]);
        let t = x * poly_coeffs[at + 1u];
        let first = at + 2u;
        if scheme == SCHEME_HORNER {
            let t2 = t * t;
            var acc = poly_coeffs[first + n - 1u];
            for (var k = n - 1u; k > 0u; k--) {
                acc = fma(acc, t2, poly_coeffs[first + k - 1u]);
            }
            x = t * acc;
        } else {
            let two_u = fma(4.0 * t, t, -2.0);
            var b1 = 0.0;
            var b2 = 0.0;
            for (var k = n; k > 0u; k--) {
                let b0 = fma(two_u, b1, poly_coeffs[first + k - 1u] - b2);
                b2 = b1;
                b1 = b0;
            }
            x = t * (b1 - b2);
        }
        at = first + n;
    }
    return x;
}
