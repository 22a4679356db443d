//! Where tract spends its time on RetinaFace: per-node CPU time, summed by operator, on the letterboxed
//! astronaut tensor.
//!
//! `cargo run --release -p images-faces --example profile_faces -- [--size 480] [--iters 20]
//!  [--transform conv_nhwc] [--transform f32_to_f16] [--nodes 15]`
//!
//! Builds the same optimised graph as `FaceDetector` (`images_faces::optimised_model`), optionally with extra
//! tract transforms, runs it single-threaded with a timing hook, and prints the whole run's median wall and
//! CPU time, one `op=` line per operator kind and the costliest nodes. Per-node figures are this thread's CPU
//! time (`/proc/thread-self/schedstat`), so other processes on a shared machine disturb them far less than
//! wall time. tract's own knobs (`TRACT_*` environment variables) apply as usual.

use std::collections::BTreeMap;
use std::time::Instant;

use images_faces::{optimised_model, FaceDetector, DEFAULT_MODEL};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::{eval, SimpleState};

/// Nanoseconds this thread has spent on a CPU (`CLOCK_THREAD_CPUTIME_ID`, exact to the nanosecond, unlike
/// `/proc/thread-self/schedstat`, which only moves at scheduler ticks).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; this clock id exists on every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut size = 480u32;
    let mut iters = 20usize;
    let mut transforms: Vec<String> = Vec::new();
    let mut top_nodes = 15usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--size" => size = value()?.parse()?,
            "--iters" => iters = value()?.parse::<usize>()?.max(1),
            "--nodes" => top_nodes = value()?.parse()?,
            "--transform" => transforms.push(value()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }

    let image = image::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/astronaut.png"
    ))?
    .to_rgb8();
    let input = FaceDetector::load_default(size)?.network_input(&image);
    let names: Vec<&str> = transforms.iter().map(String::as_str).collect();
    // The softmax FaceDetector applies in Rust after a cut is not timed here (tens of microseconds).
    let plan = optimised_model(DEFAULT_MODEL, size, &names)?
        .model
        .into_runnable()?;
    let side = size as usize;
    let mut tensor = Tensor::from_shape(&[1, 3, side, side], &input)?;
    let input_type = plan.model().input_fact(0)?.datum_type;
    if input_type != f32::datum_type() {
        tensor = tensor.cast_to_dt(input_type)?.into_owned();
    }
    let tensor: TValue = tensor.into();

    let mut state = SimpleState::new(&plan)?;
    for _ in 0..3 {
        state.run(tvec!(tensor.clone()))?;
    }
    let mut per_node: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut wall = Vec::with_capacity(iters);
    let mut cpu = Vec::with_capacity(iters);
    for _ in 0..iters {
        let started = Instant::now();
        let cpu_started = thread_cpu_ns();
        state.run_plan_with_eval(tvec!(tensor.clone()), |ctx, op_state, node, inputs| {
            let t = thread_cpu_ns();
            let out = eval(ctx, op_state, node, inputs);
            per_node
                .entry(node.id)
                .or_default()
                .push((thread_cpu_ns() - t) as f64 / 1e6);
            out
        })?;
        cpu.push((thread_cpu_ns() - cpu_started) as f64 / 1e6);
        wall.push(started.elapsed().as_secs_f64() * 1000.0);
    }

    let graph = plan.model();
    let mut by_op: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    let mut nodes: Vec<(f64, String)> = Vec::new();
    for (id, samples) in per_node {
        let node = graph.node(id);
        let ms = median(samples);
        let kind = node.op().name().to_string();
        let entry = by_op.entry(kind.clone()).or_default();
        entry.0 += ms;
        entry.1 += 1;
        let shape = graph
            .outlet_fact(OutletId::new(id, 0))
            .map(|f| format!("{:?}", f.shape))
            .unwrap_or_default();
        nodes.push((ms, format!("{kind} {} -> {shape}", node.name)));
    }
    let total: f64 = by_op.values().map(|(ms, _)| ms).sum();
    println!(
        "size={size} transforms={transforms:?} nodes={} run_wall_median_ms={:.2} run_cpu_median_ms={:.2} \
         sum_of_node_cpu_ms={total:.2}",
        graph.nodes().len(),
        median(wall),
        median(cpu),
    );
    let mut ops: Vec<_> = by_op.into_iter().collect();
    ops.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    for (kind, (ms, count)) in ops {
        println!(
            "op={kind} count={count} cpu_ms={ms:.2} share={:.1}%",
            100.0 * ms / total
        );
    }
    nodes.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (ms, what) in nodes.into_iter().take(top_nodes) {
        println!("node cpu_ms={ms:.2} {what}");
    }
    Ok(())
}
