//! Times RetinaFace in images-faces: the network alone (to compare with Python onnxruntime) and the whole
//! `detect`, on tract or, with `--onnxruntime-library`, on onnxruntime through `ort`.
//!
//! `cargo run --release -p images-faces --example bench_faces -- [--size 480] [--threads 1] [--iters 20]
//!  [--image path.png] [--dump-input path.f32] [--onnxruntime-library libonnxruntime.so]`
//! Keys are prefixed with the engine (`tract_…` or `onnxruntime_…`).
//! `--dump-input` writes the exact network input (little-endian f32, NCHW) so another runtime can be timed on
//! the same tensor. Prints one `key=value` line per figure: medians, and minima (the least disturbed run, which
//! matters on a shared machine). `scripts/bench-faces.sh` runs it in release, as production does.

use std::time::Instant;

use images_faces::{Engine, FaceDetector, DEFAULT_INPUT_SIZE};

fn median_ms(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn min_ms(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Milliseconds this thread has spent on a CPU. With one thread, tract and onnxruntime run the network on the
/// calling thread, so this is the figure other processes on a shared machine disturb least.
fn thread_cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; this clock id exists on every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1000.0 + ts.tv_nsec as f64 / 1e6
}

fn time_ms(
    iters: usize,
    mut f: impl FnMut() -> Result<(), Box<dyn std::error::Error>>,
) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        f()?;
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(samples)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut size = DEFAULT_INPUT_SIZE;
    let mut threads = 1usize;
    let mut iters = 20usize;
    let mut image_path =
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/astronaut.png").to_string();
    let mut dump: Option<String> = None;
    let mut engine = Engine::Tract;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--size" => size = value()?.parse()?,
            "--threads" => threads = value()?.parse()?,
            "--iters" => iters = value()?.parse::<usize>()?.max(1),
            "--image" => image_path = value()?,
            "--dump-input" => dump = Some(value()?),
            "--onnxruntime-library" => {
                engine = Engine::OnnxRuntime {
                    library: value()?.into(),
                    sessions: 1,
                }
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }

    let image = image::open(&image_path)?.to_rgb8();
    let started = Instant::now();
    let name = engine.name();
    let detector = FaceDetector::load_default_on(size, threads, engine)?;
    println!(
        "{name}_load_ms={:.1}",
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
    let network = time_ms(iters, || Ok(detector.run_network(&input)?))?;
    let mut network_cpu = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = thread_cpu_ms();
        detector.run_network(&input)?;
        network_cpu.push(thread_cpu_ms() - t);
    }
    // Preprocessing alone (scale + pad + BGR planes), to show it is not where the time goes.
    let letterbox = time_ms(iters, || {
        std::hint::black_box(detector.network_input(&image));
        Ok(())
    })?;
    let mut faces = Vec::new();
    let full = time_ms(iters, || {
        faces = detector.detect(&image)?;
        Ok(())
    })?;
    println!("size={size} threads={threads} iters={iters}");
    println!("{name}_network_median_ms={:.2}", median_ms(network.clone()));
    println!("{name}_network_min_ms={:.2}", min_ms(&network));
    // Only meaningful with one thread: the matmul pool's threads are not counted.
    println!(
        "{name}_network_thread_cpu_median_ms={:.2}",
        median_ms(network_cpu)
    );
    println!("{name}_letterbox_median_ms={:.2}", median_ms(letterbox));
    println!("{name}_detect_median_ms={:.2}", median_ms(full));
    println!("faces={}", faces.len());
    for f in &faces {
        println!(
            "face=[{:.1},{:.1},{:.1},{:.1}] score={:.3}",
            f.x1, f.y1, f.x2, f.y2, f.score
        );
    }
    Ok(())
}
