//! The trained digit classifier: the quantized model must agree with the float model's label on
//! at least 99% of the held-out digits, and its accuracy must be within one point of the float's.

mod common;

use ciro_model_compiler::input::read_image;
use ciro_model_compiler::reference::FloatModel;
use ciro_model_compiler::run;
use common::*;

fn argmax(v: &[f64]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

#[test]
fn quantized_digits_agree_with_float() {
    let dir = fixtures().join("models/image_recognition_v1");
    let loaded = load(&dir.join("model.onnx"));
    let compiled = compile_with(&loaded, &read_samples(&dir.join("calibration")));
    let float = FloatModel::new(&loaded).unwrap();
    let test: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("test_set.json")).unwrap()).unwrap();
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    let inputs = test["inputs"].as_array().unwrap();
    let labels = test["labels"].as_array().unwrap();
    assert!(
        inputs.len() >= 300,
        "held-out set too small: {}",
        inputs.len()
    );
    let (mut agree, mut q_right, mut f_right) = (0usize, 0usize, 0usize);
    for (x, y) in inputs.iter().zip(labels) {
        let x: Vec<f32> = x
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let y = y.as_u64().unwrap() as usize;
        let q = argmax(&run(&compiled.graph, std::slice::from_ref(&x)).unwrap()[0]);
        let f = float.run(&[x]).unwrap()[0]
            .iter()
            .map(|&v| v as f64)
            .collect::<Vec<_>>();
        let f = argmax(&f);
        agree += (q == f) as usize;
        q_right += (q == y) as usize;
        f_right += (f == y) as usize;
    }
    let n = inputs.len() as f64;
    let (agreement, q_acc, f_acc) = (agree as f64 / n, q_right as f64 / n, f_right as f64 / n);
    println!(
        "digits: n={n} scale {} agreement {:.2}% float acc {:.2}% quantized acc {:.2}%",
        compiled.graph.config.scale,
        agreement * 100.0,
        f_acc * 100.0,
        q_acc * 100.0
    );
    assert!(agreement >= 0.99, "label agreement {agreement}");
    assert!(
        (q_acc - f_acc).abs() <= 0.01,
        "accuracy {q_acc} vs float {f_acc}"
    );
    let recorded = metrics["float_test_accuracy"].as_f64().unwrap();
    assert!(
        (f_acc - recorded).abs() < 1e-9,
        "tract float accuracy {f_acc} != recorded {recorded}"
    );
    assert!(f_acc >= 0.9, "the classifier is actually trained: {f_acc}");
}

#[test]
fn bundled_images_classify_as_their_labels() {
    let dir = fixtures().join("models/image_recognition_v1");
    let loaded = load(&dir.join("model.onnx"));
    let compiled = compile_with(&loaded, &read_samples(&dir.join("calibration")));
    let graph = &compiled.graph;
    let spec = graph.image.clone().expect("image metadata");
    let images = fixtures().join("images");
    let labels: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(images.join("labels.json")).unwrap())
            .unwrap();
    let entries = labels.as_object().unwrap();
    assert!(entries.len() >= 6);
    let mut right = 0;
    for (file, info) in entries {
        let want = info
            .get("label")
            .and_then(|v| v.as_u64())
            .or_else(|| info.as_u64())
            .unwrap() as usize;
        let x = read_image(&images.join(file), &spec).unwrap();
        let got = argmax(&run(graph, &[x]).unwrap()[0]);
        println!("{file}: label {want}, predicted {got}");
        right += (got == want) as usize;
    }
    assert!(
        right * 10 >= entries.len() * 8,
        "only {right}/{} bundled images classified right",
        entries.len()
    );
}
