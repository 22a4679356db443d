//! A small in-place radix-2 FFT, enough for the 64×64 spectra the saliency map needs.

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Complex {
    pub re: f32,
    pub im: f32,
}

impl Complex {
    pub fn new(re: f32, im: f32) -> Self {
        Complex { re, im }
    }

    pub fn norm(self) -> f32 {
        self.re.hypot(self.im)
    }

    pub fn arg(self) -> f32 {
        self.im.atan2(self.re)
    }

    fn mul(self, o: Complex) -> Complex {
        Complex::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }

    fn add(self, o: Complex) -> Complex {
        Complex::new(self.re + o.re, self.im + o.im)
    }

    fn sub(self, o: Complex) -> Complex {
        Complex::new(self.re - o.re, self.im - o.im)
    }
}

/// Transforms `data` (length a power of two) in place. `inverse` also divides by the length.
pub fn fft(data: &mut [Complex], inverse: bool) {
    let n = data.len();
    debug_assert!(n.is_power_of_two());
    if n < 2 {
        return;
    }
    // Bit-reversal permutation.
    let bits = n.trailing_zeros();
    for i in 0..n {
        let j = i.reverse_bits() >> (usize::BITS - bits);
        if j > i {
            data.swap(i, j);
        }
    }
    let sign = if inverse { 1.0 } else { -1.0 };
    let mut len = 2;
    while len <= n {
        let angle = sign * 2.0 * std::f64::consts::PI / len as f64;
        for start in (0..n).step_by(len) {
            for k in 0..len / 2 {
                // Twiddles in f64 keep the error flat across sizes.
                let (s, c) = (angle * k as f64).sin_cos();
                let w = Complex::new(c as f32, s as f32);
                let a = data[start + k];
                let b = data[start + k + len / 2].mul(w);
                data[start + k] = a.add(b);
                data[start + k + len / 2] = a.sub(b);
            }
        }
        len <<= 1;
    }
    if inverse {
        let scale = 1.0 / n as f32;
        for v in data.iter_mut() {
            v.re *= scale;
            v.im *= scale;
        }
    }
}

/// 2-D transform of a row-major `side`×`side` grid: every row, then every column.
pub fn fft2(data: &mut [Complex], side: usize, inverse: bool) {
    for row in data.chunks_exact_mut(side) {
        fft(row, inverse);
    }
    let mut column = vec![Complex::default(); side];
    for x in 0..side {
        for y in 0..side {
            column[y] = data[y * side + x];
        }
        fft(&mut column, inverse);
        for y in 0..side {
            data[y * side + x] = column[y];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook O(n²) DFT, as the reference.
    fn dft(input: &[Complex]) -> Vec<Complex> {
        let n = input.len();
        (0..n)
            .map(|k| {
                input
                    .iter()
                    .enumerate()
                    .fold(Complex::default(), |acc, (t, v)| {
                        let a = -2.0 * std::f64::consts::PI * (k * t) as f64 / n as f64;
                        acc.add(v.mul(Complex::new(a.cos() as f32, a.sin() as f32)))
                    })
            })
            .collect()
    }

    #[test]
    fn matches_the_naive_dft_and_inverts() {
        let input: Vec<Complex> = (0..16)
            .map(|i| Complex::new((i as f32 * 0.7).sin() + i as f32 * 0.1, (i % 3) as f32))
            .collect();
        let mut data = input.clone();
        fft(&mut data, false);
        for (a, b) in data.iter().zip(dft(&input)) {
            assert!(
                (a.re - b.re).abs() < 1e-3 && (a.im - b.im).abs() < 1e-3,
                "{a:?} vs {b:?}"
            );
        }
        fft(&mut data, true);
        for (a, b) in data.iter().zip(&input) {
            assert!((a.re - b.re).abs() < 1e-4 && (a.im - b.im).abs() < 1e-4);
        }
    }

    #[test]
    fn fft2_of_a_constant_is_a_single_dc_term() {
        let mut data = vec![Complex::new(2.0, 0.0); 64];
        fft2(&mut data, 8, false);
        assert_eq!(data[0].re, 128.0);
        assert!(data[1..].iter().all(|v| v.norm() < 1e-4));
    }
}
