//! RetinaFace prior ("anchor") boxes. The network predicts offsets against these, in the same order.

/// Feature-map strides of the three detection levels.
pub const STEPS: [u32; 3] = [8, 16, 32];
/// Anchor sizes (pixels of the network input) per level, two anchors per cell.
pub const MIN_SIZES: [[f32; 2]; 3] = [[16.0, 32.0], [64.0, 128.0], [256.0, 512.0]];

/// One prior box, normalised to the network input: centre and size in 0..1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prior {
    pub cx: f32,
    pub cy: f32,
    pub w: f32,
    pub h: f32,
}

/// All priors for an input of `width`×`height`: level by level, cells row-major, anchors of a cell in order.
pub fn priors(width: u32, height: u32) -> Vec<Prior> {
    let mut out = Vec::with_capacity(prior_count(width, height));
    let (wf, hf) = (width as f32, height as f32);
    for (step, sizes) in STEPS.iter().zip(MIN_SIZES.iter()) {
        let rows = height.div_ceil(*step);
        let cols = width.div_ceil(*step);
        let stepf = *step as f32;
        for row in 0..rows {
            for col in 0..cols {
                for size in sizes {
                    out.push(Prior {
                        cx: (col as f32 + 0.5) * stepf / wf,
                        cy: (row as f32 + 0.5) * stepf / hf,
                        w: size / wf,
                        h: size / hf,
                    });
                }
            }
        }
    }
    out
}

/// How many priors (and so output rows) an input of this size has.
pub fn prior_count(width: u32, height: u32) -> usize {
    STEPS
        .iter()
        .zip(MIN_SIZES.iter())
        .map(|(step, sizes)| {
            (width.div_ceil(*step) * height.div_ceil(*step)) as usize * sizes.len()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_for_640_matches_the_published_model() {
        // 2 * (80*80 + 40*40 + 20*20) = 16800, the row count of RetinaFace's outputs at 640x640.
        assert_eq!(prior_count(640, 640), 16800);
        assert_eq!(priors(640, 640).len(), 16800);
    }

    #[test]
    fn count_rounds_partial_cells_up() {
        // 100/8 = 12.5 -> 13, 100/16 = 6.25 -> 7, 100/32 = 3.125 -> 4.
        assert_eq!(prior_count(100, 100), 2 * (13 * 13 + 7 * 7 + 4 * 4));
    }

    #[test]
    fn order_is_level_then_row_then_column_then_anchor() {
        let p = priors(64, 32);
        // Level 0 at 64x32: 8 cols x 4 rows. Second cell of row 0 starts at index 2.
        assert_eq!(
            p[0],
            Prior {
                cx: 4.0 / 64.0,
                cy: 4.0 / 32.0,
                w: 16.0 / 64.0,
                h: 16.0 / 32.0
            }
        );
        assert_eq!(p[1].w, 32.0 / 64.0);
        assert_eq!(p[2].cx, 12.0 / 64.0);
        // First cell of row 1.
        assert_eq!(p[16].cy, 12.0 / 32.0);
        // First prior of level 1 follows the 8*4*2 = 64 level-0 priors.
        assert_eq!(p[64].w, 64.0 / 64.0);
        assert_eq!(p[64].cx, 8.0 / 64.0);
    }
}
