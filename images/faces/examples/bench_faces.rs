//! Times RetinaFace on tract: the network alone (to compare with onnxruntime) and the whole `detect`.
//!
//! `cargo run -p images-faces --example bench_faces -- [--size 320] [--threads 1] [--iters 20]
//!  [--image path.png] [--dump-input path.f32]`
//! `--dump-input` writes the exact network input (little-endian f32, NCHW) so another runtime can be timed on
//! the same tensor. Prints one `key=value` line per figure.

use std::time::Instant;

use images_faces::FaceDetector;

fn median_ms(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut size = 320u32;
    let mut threads = 1usize;
    let mut iters = 20usize;
    let mut image_path =
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/astronaut.png").to_string();
    let mut dump: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--size" => size = value()?.parse()?,
            "--threads" => threads = value()?.parse()?,
            "--iters" => iters = value()?.parse::<usize>()?.max(1),
            "--image" => image_path = value()?,
            "--dump-input" => dump = Some(value()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }

    let image = image::open(&image_path)?.to_rgb8();
    let started = Instant::now();
    let detector = FaceDetector::load_default_with_threads(size, threads)?;
    println!(
        "tract_plan_build_ms={:.1}",
        started.elapsed().as_secs_f64() * 1000.0
    );

    let input = detector.network_input(&image);
    if let Some(path) = dump {
        let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(path, bytes)?;
    }
    for _ in 0..3 {
        detector.run_network(&input)?;
    }
    let mut network = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        detector.run_network(&input)?;
        network.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut full = Vec::with_capacity(iters);
    let mut faces = Vec::new();
    for _ in 0..iters {
        let t = Instant::now();
        faces = detector.detect(&image)?;
        full.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!("size={size} threads={threads} iters={iters}");
    println!("tract_network_median_ms={:.2}", median_ms(network));
    println!("tract_detect_median_ms={:.2}", median_ms(full));
    println!("faces={}", faces.len());
    for f in &faces {
        println!(
            "face=[{:.1},{:.1},{:.1},{:.1}] score={:.3}",
            f.x1, f.y1, f.x2, f.y2, f.score
        );
    }
    Ok(())
}
