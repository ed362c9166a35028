//! Small PNG charts for the validation report: lines, bars and axes on an RGB canvas, encoded
//! with the deflate and CRC code vigil already links (no plotting or font dependency). Charts
//! carry no text; the HTML page around them gives titles, axes and legends.

use std::io::Write as _;

pub type Rgb = [u8; 3];

/// Series colours, in the order the report lists predictors.
pub const PALETTE: [Rgb; 7] = [
    [214, 39, 40],
    [31, 119, 180],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [140, 86, 75],
    [127, 127, 127],
];
const GRID: Rgb = [225, 225, 225];
const AXIS: Rgb = [40, 40, 40];

/// A white canvas with a plot area inset by a margin; data coordinates are mapped onto it.
pub struct Chart {
    w: usize,
    h: usize,
    px: Vec<u8>,
    margin: usize,
    x: (f64, f64),
    y: (f64, f64),
}

impl Chart {
    /// A chart of `w`×`h` pixels showing x in `x` and y in `y`, with a light grid at tenths.
    pub fn new(w: usize, h: usize, x: (f64, f64), y: (f64, f64)) -> Chart {
        let mut c = Chart {
            w,
            h,
            px: vec![255; w * h * 3],
            margin: 24,
            x,
            y,
        };
        for i in 0..=10 {
            let f = f64::from(i) / 10.0;
            let gx = x.0 + f * (x.1 - x.0);
            let gy = y.0 + f * (y.1 - y.0);
            c.line((gx, y.0), (gx, y.1), GRID, 1);
            c.line((x.0, gy), (x.1, gy), GRID, 1);
        }
        c.line((x.0, y.0), (x.1, y.0), AXIS, 2);
        c.line((x.0, y.0), (x.0, y.1), AXIS, 2);
        c
    }

    fn to_px(&self, (x, y): (f64, f64)) -> (f64, f64) {
        let m = self.margin as f64;
        let pw = self.w as f64 - 2.0 * m;
        let ph = self.h as f64 - 2.0 * m;
        let fx = if self.x.1 > self.x.0 {
            (x - self.x.0) / (self.x.1 - self.x.0)
        } else {
            0.0
        };
        let fy = if self.y.1 > self.y.0 {
            (y - self.y.0) / (self.y.1 - self.y.0)
        } else {
            0.0
        };
        (
            m + fx.clamp(0.0, 1.0) * pw,
            m + (1.0 - fy.clamp(0.0, 1.0)) * ph,
        )
    }

    fn dot(&mut self, x: i64, y: i64, c: Rgb, r: i64) {
        for dy in -(r / 2)..(r - r / 2) {
            for dx in -(r / 2)..(r - r / 2) {
                let (px, py) = (x + dx, y + dy);
                if px < 0 || py < 0 || px as usize >= self.w || py as usize >= self.h {
                    continue;
                }
                let i = (py as usize * self.w + px as usize) * 3;
                if let Some(p) = self.px.get_mut(i..i + 3) {
                    p.copy_from_slice(&c);
                }
            }
        }
    }

    /// A straight line in data coordinates, `width` pixels thick.
    pub fn line(&mut self, a: (f64, f64), b: (f64, f64), c: Rgb, width: i64) {
        let (ax, ay) = self.to_px(a);
        let (bx, by) = self.to_px(b);
        let steps = ((bx - ax).abs().max((by - ay).abs()).ceil() as i64).max(1);
        for i in 0..=steps {
            let f = i as f64 / steps as f64;
            let x = ax + f * (bx - ax);
            let y = ay + f * (by - ay);
            self.dot(x.round() as i64, y.round() as i64, c, width);
        }
    }

    /// A polyline through the points, in order.
    pub fn polyline(&mut self, pts: &[(f64, f64)], c: Rgb, width: i64) {
        for w in pts.windows(2) {
            if let [a, b] = w {
                self.line(*a, *b, c, width);
            }
        }
    }

    /// A filled rectangle between two data corners.
    pub fn rect(&mut self, a: (f64, f64), b: (f64, f64), c: Rgb) {
        let (ax, ay) = self.to_px(a);
        let (bx, by) = self.to_px(b);
        let (x0, x1) = (ax.min(bx).round() as i64, ax.max(bx).round() as i64);
        let (y0, y1) = (ay.min(by).round() as i64, ay.max(by).round() as i64);
        for y in y0..=y1 {
            for x in x0..=x1 {
                self.dot(x, y, c, 1);
            }
        }
    }

    /// A small filled square marker at a data point.
    pub fn marker(&mut self, p: (f64, f64), c: Rgb) {
        let (x, y) = self.to_px(p);
        self.dot(x.round() as i64, y.round() as i64, c, 7);
    }

    /// The PNG bytes (8-bit RGB, no interlace).
    pub fn png(&self) -> Vec<u8> {
        encode_png(self.w, self.h, &self.px)
    }
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(kind);
    h.update(data);
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&h.finalize().to_be_bytes());
}

/// Encodes 8-bit RGB pixels (row-major, `w * h * 3` bytes) as a PNG.
pub fn encode_png(w: usize, h: usize, rgb: &[u8]) -> Vec<u8> {
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&(w as u32).to_be_bytes());
    ihdr.extend_from_slice(&(h as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    let mut raw = Vec::with_capacity(h * (w * 3 + 1));
    for row in rgb.chunks(w * 3).take(h) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = z.write_all(&raw);
    let data = z.finish().unwrap_or_default();
    chunk(&mut out, b"IDAT", &data);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_has_signature_header_and_decodes_back() {
        let mut c = Chart::new(40, 30, (0.0, 1.0), (0.0, 1.0));
        c.line((0.0, 0.0), (1.0, 1.0), PALETTE[0], 2);
        let png = c.png();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 40);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 30);
        // The IDAT inflates back to 30 rows of filter byte + 40 RGB pixels.
        let len = u32::from_be_bytes(png[33..37].try_into().unwrap()) as usize;
        assert_eq!(&png[37..41], b"IDAT");
        let mut d = flate2::read::ZlibDecoder::new(&png[41..41 + len]);
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut raw).unwrap();
        assert_eq!(raw.len(), 30 * (40 * 3 + 1));
        assert!(raw
            .chunks(121)
            .any(|r| r[1..].chunks(3).any(|p| p == PALETTE[0])));
        assert!(png.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xae, 0x42, 0x60, 0x82]));
    }
}
