//! One transform through Mediaplane's `/cdn-cgi/image` pipeline (probe → shrink-on-load decode →
//! resize → encode), for `scripts/bench-images.sh`. Prints the in-process time in milliseconds.
//!
//! Usage: bench_transform <input> <output> [options, default "width=800,quality=85"] [repeat]

use std::time::Instant;

use images::transform::{self, TransformOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: bench_transform <input> <output> [options] [repeat]");
        std::process::exit(2);
    }
    let options = args
        .get(3)
        .map(String::as_str)
        .unwrap_or("width=800,quality=85");
    let repeat: usize = args.get(4).and_then(|r| r.parse().ok()).unwrap_or(1);
    let data = std::fs::read(&args[1]).expect("read input");
    let opts = TransformOptions::parse(options).expect("options");
    let limits = transform::SourceLimits {
        max_bytes: u64::MAX,
        max_pixels: 400_000_000,
        max_side: 40_000,
    };
    let mut times = Vec::new();
    let mut output = None;
    for _ in 0..repeat.max(1) {
        let start = Instant::now();
        let probe = transform::probe(&data, &limits).expect("probe");
        let out = transform::choose_output(opts.format, probe.format, false, "").expect("format");
        let result =
            transform::transform(&data, &probe, &opts, out, None, None).expect("transform");
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        output = Some(result);
    }
    let output = output.expect("one run");
    std::fs::write(&args[2], &output.bytes).expect("write output");
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{:.1} ms median ({} runs) -> {}x{} {} bytes",
        times[times.len() / 2],
        times.len(),
        output.width,
        output.height,
        output.bytes.len()
    );
}
