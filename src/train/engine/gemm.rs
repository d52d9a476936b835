//! Matrix products through the `gemm` crate (the kernels candle's CPU back end also uses),
//! behind a safe interface: every operand is a slice with its row and column strides, checked
//! against the slice's length before the unsafe call.

/// A read-only matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// A row-major `rows x cols` matrix.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        View {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn rows_t(data: &'a [f32], cols: usize) -> Self {
        View {
            data,
            rs: 1,
            cs: cols,
        }
    }

    fn fits(&self, r: usize, c: usize) -> bool {
        r == 0 || c == 0 || (r - 1) * self.rs + (c - 1) * self.cs < self.data.len()
    }
}

/// `dst = a * b`, or `dst += a * b` when `accumulate`; `a` is `m x k`, `b` is `k x n`, and
/// `dst` is row-major `m x n`. Single-threaded: callers split work over images or channels.
pub fn matmul(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    a: View<'_>,
    b: View<'_>,
    accumulate: bool,
) {
    assert!(
        dst.len() >= m * n && a.fits(m, k) && b.fits(k, n),
        "matrix product operands are smaller than their shapes"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    // SAFETY: the bounds above keep every index the product reads or writes inside its slice;
    // `dst` is borrowed mutably, so it cannot alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_and_transposes_agree_with_the_definition() {
        let (m, n, k) = (3, 4, 5);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.91).cos()).collect();
        let mut want = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                want[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        let mut got = vec![1.0f32; m * n];
        matmul(
            &mut got,
            (m, n, k),
            View::rows(&a, k),
            View::rows(&b, n),
            false,
        );
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5);
        }
        // (b^T a^T)^T = a b, read through transposed views, accumulated onto itself.
        let mut twice = got.clone();
        let mut bt_at = vec![0.0f32; n * m];
        matmul(
            &mut bt_at,
            (n, m, k),
            View::rows_t(&b, n),
            View::rows_t(&a, k),
            false,
        );
        for i in 0..m {
            for j in 0..n {
                twice[i * n + j] += bt_at[j * m + i];
            }
        }
        matmul(
            &mut got,
            (m, n, k),
            View::rows(&a, k),
            View::rows(&b, n),
            true,
        );
        for (g, t) in got.iter().zip(&twice) {
            assert!((g - t).abs() < 1e-5);
        }
    }
}
