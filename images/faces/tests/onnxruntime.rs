//! The onnxruntime engine against the tract engine on the same photos: same model, same pre- and
//! post-processing, so the faces must agree to within float noise. Needs onnxruntime's shared library
//! (`MEDIAPLANE_TEST_ONNXRUNTIME_LIBRARY`; scripts/test.sh points it at the PyPI wheel's copy).

use std::{path::PathBuf, sync::Arc};

use image::RgbImage;
use images_faces::{Engine, Face, FaceDetector, DEFAULT_INPUT_SIZE};
use platform::testing::skip_or_fail;

fn library() -> Option<PathBuf> {
    let path = std::env::var_os("MEDIAPLANE_TEST_ONNXRUNTIME_LIBRARY").map(PathBuf::from);
    if path.is_none() {
        skip_or_fail("onnxruntime (MEDIAPLANE_TEST_ONNXRUNTIME_LIBRARY)");
    }
    path
}

fn astronaut() -> RgbImage {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/astronaut.png");
    image::open(path).expect("astronaut.png decodes").to_rgb8()
}

fn on_onnxruntime(library: PathBuf, sessions: usize) -> FaceDetector {
    let engine = Engine::OnnxRuntime { library, sessions };
    FaceDetector::load_default_on(DEFAULT_INPUT_SIZE, 1, engine)
        .expect("model loads on onnxruntime")
}

fn assert_same_faces(got: &[Face], reference: &[Face]) {
    assert_eq!(got.len(), reference.len(), "{got:?} vs {reference:?}");
    for (g, r) in got.iter().zip(reference) {
        let pairs = [(g.x1, r.x1), (g.y1, r.y1), (g.x2, r.x2), (g.y2, r.y2)];
        assert!(
            pairs.iter().all(|(a, b)| (a - b).abs() < 0.5) && (g.score - r.score).abs() < 1e-3,
            "{g:?} vs {r:?}"
        );
        for (gp, rp) in g.landmarks.iter().zip(&r.landmarks) {
            assert!(
                (gp[0] - rp[0]).abs() < 0.5 && (gp[1] - rp[1]).abs() < 0.5,
                "{g:?} vs {r:?}"
            );
        }
    }
}

#[test]
fn onnxruntime_finds_the_same_faces_as_tract() {
    let Some(library) = library() else { return };
    let detector = on_onnxruntime(library, 2);
    assert_eq!(detector.engine().name(), "onnxruntime");
    let tract = FaceDetector::load_default(DEFAULT_INPUT_SIZE).unwrap();
    assert_eq!(tract.engine().name(), "tract");

    let photo = astronaut();
    let reference = tract.detect(&photo).unwrap();
    assert_eq!(reference.len(), 1, "{reference:?}");
    assert_same_faces(&detector.detect(&photo).unwrap(), &reference);

    // A faceless picture: nothing on either engine.
    let flat = RgbImage::from_pixel(300, 200, image::Rgb([90, 120, 150]));
    assert!(detector.detect(&flat).unwrap().is_empty());

    // Concurrent detections share the sessions and agree.
    let detector = Arc::new(detector);
    let photo = Arc::new(photo);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (detector, photo) = (Arc::clone(&detector), Arc::clone(&photo));
            std::thread::spawn(move || detector.detect(&photo).unwrap())
        })
        .collect();
    for thread in threads {
        assert_same_faces(&thread.join().unwrap(), &reference);
    }
}

#[test]
fn a_missing_or_bogus_library_is_a_clear_error() {
    // Whatever this process loaded first stays loaded, so only paths that never load are tried here.
    let missing = Engine::OnnxRuntime {
        library: PathBuf::from("/nonexistent/libonnxruntime.so"),
        sessions: 1,
    };
    let err = FaceDetector::load_default_on(DEFAULT_INPUT_SIZE, 1, missing).unwrap_err();
    assert_eq!(err.code(), "face_engine_unavailable", "{err}");
}
