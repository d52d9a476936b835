//! The embedded `shapes` dataset: small grey images of six shapes, generated from a seed, so
//! that every command has data without a download.

use std::f64::consts::PI;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Dataset, Split};

/// Settings of the embedded `shapes` dataset.
#[derive(Debug, Clone)]
pub struct ShapesConfig {
    /// Image side in pixels.
    pub size: usize,
    /// Training images.
    pub train: usize,
    /// Test images.
    pub test: usize,
    /// Seed of the generator.
    pub seed: u64,
    /// Standard deviation of the added pixel noise.
    pub noise: f64,
}

impl Default for ShapesConfig {
    fn default() -> Self {
        ShapesConfig {
            size: 16,
            train: 12000,
            test: 1000,
            seed: 0,
            noise: 0.12,
        }
    }
}

/// The classes of `shapes`.
pub const SHAPE_CLASSES: [&str; 6] = ["disk", "square", "triangle", "cross", "ring", "bar"];

/// Whether the point `(u, v)` (in the shape's own frame, radius 1) is inside shape `class`.
fn inside(class: usize, u: f64, v: f64) -> bool {
    match class {
        0 => u * u + v * v <= 1.0,
        1 => u.abs() <= 0.8 && v.abs() <= 0.8,
        2 => {
            // An equilateral triangle with its corners on the unit circle.
            let h = 0.5;
            v >= -h && (3f64.sqrt() * u + v <= 1.0) && (-(3f64.sqrt()) * u + v <= 1.0)
        }
        3 => (u.abs() <= 0.3 && v.abs() <= 1.0) || (v.abs() <= 0.3 && u.abs() <= 1.0),
        4 => {
            let r2 = u * u + v * v;
            (0.36..=1.0).contains(&r2)
        }
        _ => u.abs() <= 1.0 && v.abs() <= 0.25,
    }
}

/// One standard normal draw (Box-Muller), as the `shapes` noise uses it.
pub fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let (a, b): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
    (-2.0 * a.ln()).sqrt() * (2.0 * PI * b).cos()
}

/// Generates one shape image: random centre, scale, rotation and brightness, 2x2 supersampled,
/// plus Gaussian pixel noise, clipped to `[0, 1]`.
fn shape_image(class: usize, size: usize, noise: f64, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let s = size as f64;
    let radius = s * rng.random_range(0.28..0.44);
    let margin = radius * 0.9;
    let cx = rng.random_range(margin..s - margin);
    let cy = rng.random_range(margin..s - margin);
    let angle = rng.random_range(0.0..2.0 * PI);
    let bright = rng.random_range(0.6..1.0);
    let (sin, cos) = angle.sin_cos();
    let mut img = vec![0f32; size * size];
    for py in 0..size {
        for px in 0..size {
            let mut hits = 0;
            for (dx, dy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                let (x, y) = (
                    (px as f64 + dx - cx) / radius,
                    (py as f64 + dy - cy) / radius,
                );
                let (u, v) = (cos * x + sin * y, -sin * x + cos * y);
                hits += inside(class, u, v) as usize;
            }
            let n = standard_normal(rng);
            let value = bright * hits as f64 / 4.0 + noise * n;
            img[py * size + px] = value.clamp(0.0, 1.0) as f32;
        }
    }
    img
}

/// The embedded `shapes` dataset: balanced classes in a seeded order.
pub fn shapes(cfg: &ShapesConfig) -> Dataset {
    let split = |n: usize, stream: u64| {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        rng.set_stream(stream);
        let mut out = Split::default();
        for i in 0..n {
            let class = i % SHAPE_CLASSES.len();
            out.x
                .extend(shape_image(class, cfg.size, cfg.noise, &mut rng));
            out.y.push(class as u32);
        }
        out
    };
    Dataset {
        name: if cfg.size == 16 {
            "shapes".into()
        } else {
            format!("shapes:{}", cfg.size)
        },
        shape: vec![1, cfg.size, cfg.size],
        classes: SHAPE_CLASSES.len(),
        class_names: SHAPE_CLASSES.iter().map(|s| s.to_string()).collect(),
        train: split(cfg.train, 1),
        test: split(cfg.test, 2),
    }
}
