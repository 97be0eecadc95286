//! Model inputs: EZKL-style JSON tensors and images.

use std::path::Path;

use crate::error::{CompileError, Result};
use crate::ir::ImageSpec;

/// Reads `{"input_data": [[...], ...]}` (one list per model input; nested lists are flattened).
pub fn read_json(path: &Path) -> Result<Vec<Vec<f32>>> {
    let text = std::fs::read_to_string(path).map_err(|source| CompileError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_json(&text).map_err(|e| CompileError::Input(format!("{}: {e}", path.display())))
}

pub fn parse_json(text: &str) -> std::result::Result<Vec<Vec<f32>>, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON ({e})"))?;
    let data = v.get("input_data").ok_or(
        "expected an object with an `input_data` field, e.g. {\"input_data\": [[0.1, 0.2]]}",
    )?;
    let list = data
        .as_array()
        .ok_or("`input_data` must be a list with one list per model input")?;
    let mut inputs = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let mut flat = Vec::new();
        flatten(item, &mut flat).map_err(|e| format!("input_data[{i}]: {e}"))?;
        inputs.push(flat);
    }
    Ok(inputs)
}

fn flatten(v: &serde_json::Value, out: &mut Vec<f32>) -> std::result::Result<(), String> {
    match v {
        serde_json::Value::Array(items) => items.iter().try_for_each(|x| flatten(x, out)),
        serde_json::Value::Number(n) => {
            let f = n.as_f64().ok_or_else(|| format!("{n} is not a number"))? as f32;
            if !f.is_finite() {
                return Err(format!(
                    "value {n} at position {} is out of the f32 range",
                    out.len()
                ));
            }
            out.push(f);
            Ok(())
        }
        // A bool input's values (EZKL writes them as JSON booleans).
        serde_json::Value::Bool(b) => {
            out.push(f32::from(u8::from(*b)));
            Ok(())
        }
        other => Err(format!(
            "value {other} at position {} is not a finite number",
            out.len()
        )),
    }
}

/// Checks input count, lengths and finiteness against the model's input shapes.
pub fn check_inputs(inputs: &[Vec<f32>], shapes: &[Vec<usize>]) -> Result<()> {
    if inputs.len() != shapes.len() {
        return Err(CompileError::Input(format!(
            "the model takes {} input(s), got {}",
            shapes.len(),
            inputs.len()
        )));
    }
    for (i, (x, s)) in inputs.iter().zip(shapes).enumerate() {
        let want: usize = s.iter().product();
        if x.len() != want {
            return Err(CompileError::Input(format!(
                "input {i} has {} values, the model expects shape {s:?} ({want} values)",
                x.len()
            )));
        }
        if let Some(p) = x.iter().position(|v| !v.is_finite()) {
            return Err(CompileError::Input(format!(
                "input {i} value at position {p} is {} (NaN and infinities are not allowed)",
                x[p]
            )));
        }
    }
    Ok(())
}

/// Decodes a PNG/JPEG and turns it into the model input the image spec declares
/// (grayscale or RGB, box-filtered resize, pixel range mapping, channel-major layout).
pub fn read_image(path: &Path, spec: &ImageSpec) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).map_err(|source| CompileError::Io {
        path: path.display().to_string(),
        source,
    })?;
    decode_image(&bytes, &path.display().to_string(), spec)
}

/// The largest image side accepted, before and after resizing.
pub const MAX_IMAGE_SIDE: u32 = 8192;
/// The most memory one decoding may allocate (an 8192×8192 RGBA image).
pub const MAX_IMAGE_ALLOC: u64 = 256 << 20;

/// A `ciro.image` declaration must describe the model's one input exactly (channels × height ×
/// width values) with sides the decoder accepts.
pub fn check_image_spec(
    spec: &ImageSpec,
    input_shapes: &[Vec<usize>],
) -> std::result::Result<(), String> {
    if !matches!(spec.channels, 1 | 3) {
        return Err(format!(
            "{} channels; only 1 (grayscale) or 3 (RGB) are supported",
            spec.channels
        ));
    }
    let max = MAX_IMAGE_SIDE as usize;
    if spec.height == 0 || spec.width == 0 || spec.height > max || spec.width > max {
        return Err(format!(
            "an image of {}×{}; each side must be 1 to {max}",
            spec.width, spec.height
        ));
    }
    let [lo, hi] = spec.range;
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Err(format!(
            "pixel range [{lo}, {hi}] is not an increasing finite range"
        ));
    }
    let [shape] = input_shapes else {
        return Err(format!(
            "images feed a model with one input; this one has {}",
            input_shapes.len()
        ));
    };
    let want = spec.channels * spec.height * spec.width;
    let have: usize = shape.iter().product();
    if have != want {
        return Err(format!(
            "{}×{}×{} = {want} values, but the input has shape {shape:?} ({have} values)",
            spec.channels, spec.height, spec.width
        ));
    }
    Ok(())
}

/// [`read_image`] for an image already in memory; `origin` names it in errors. Decoding is
/// bounded: sides up to [`MAX_IMAGE_SIDE`], at most [`MAX_IMAGE_ALLOC`] bytes, and the pixels
/// are read in place (no per-pixel float copy), so a decompression bomb is refused early.
pub fn decode_image(bytes: &[u8], origin: &str, spec: &ImageSpec) -> Result<Vec<f32>> {
    let bad = |reason: String| CompileError::Image {
        path: origin.to_string(),
        reason,
    };
    check_image_spec(spec, &[vec![spec.channels, spec.height, spec.width]]).map_err(bad)?;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(format!("cannot read ({e})")))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_ALLOC);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| bad(format!("cannot decode ({e})")))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return Err(bad("the image is empty".into()));
    }
    let pixels = match spec.channels {
        1 => img.into_luma8().into_raw(),
        _ => img.into_rgb8().into_raw(),
    };
    let c = spec.channels;
    let [lo, hi] = spec.range;
    let mut out = Vec::with_capacity(c * spec.height * spec.width);
    for ch in 0..c {
        let plane = |i: usize| pixels[i * c + ch] as f64;
        for p in box_resize(plane, w, h, spec.width, spec.height) {
            out.push((lo + (hi - lo) * p / 255.0) as f32);
        }
    }
    Ok(out)
}

/// Area-average resize: each target pixel is the mean of the source pixels whose centres fall
/// inside it (nearest source pixel when upscaling). An exact inverse of nearest-neighbour upscaling.
/// `src(i)` is the source pixel at `i = y * w + x`.
fn box_resize(src: impl Fn(usize) -> f64, w: usize, h: usize, tw: usize, th: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(tw * th);
    for ty in 0..th {
        let y0 = ty * h / th;
        let y1 = ((ty + 1) * h / th).max(y0 + 1);
        for tx in 0..tw {
            let x0 = tx * w / tw;
            let x1 = ((tx + 1) * w / tw).max(x0 + 1);
            let mut sum = 0.0;
            for y in y0..y1.min(h) {
                for x in x0..x1.min(w) {
                    sum += src(y * w + x);
                }
            }
            out.push(sum / ((y1.min(h) - y0) * (x1.min(w) - x0)) as f64);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ezkl_json() {
        let v = parse_json(r#"{"input_data": [[0.5, -1, [2, 3]]]}"#).unwrap();
        assert_eq!(v, vec![vec![0.5, -1.0, 2.0, 3.0]]);
    }

    #[test]
    fn rejects_bad_json() {
        assert!(parse_json("{").unwrap_err().contains("not valid JSON"));
        assert!(parse_json(r#"{"data": []}"#)
            .unwrap_err()
            .contains("input_data"));
        assert!(parse_json(r#"{"input_data": [["NaN"]]}"#)
            .unwrap_err()
            .contains("not a finite number"));
        assert!(parse_json(r#"{"input_data": [[1e300]]}"#)
            .unwrap_err()
            .contains("f32 range"));
    }

    #[test]
    fn box_resize_inverts_nearest_upscale() {
        let src = [1.0, 2.0, 3.0, 4.0];
        let up: Vec<f64> = (0..16).map(|i| src[(i / 8) * 2 + (i % 4) / 2]).collect();
        assert_eq!(box_resize(|i| up[i], 4, 4, 2, 2), src.to_vec());
    }

    #[test]
    fn checks_shapes_and_finiteness() {
        let shapes = vec![vec![1, 3]];
        assert!(check_inputs(&[vec![0.0; 3]], &shapes).is_ok());
        let e = check_inputs(&[vec![0.0; 4]], &shapes)
            .unwrap_err()
            .to_string();
        assert!(e.contains("4 values") && e.contains("[1, 3]"), "{e}");
        let e = check_inputs(&[vec![0.0, f32::NAN, 0.0]], &shapes)
            .unwrap_err()
            .to_string();
        assert!(e.contains("NaN"), "{e}");
    }
}
