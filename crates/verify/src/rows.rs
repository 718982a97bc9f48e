//! A borrowed row-major matrix: one row per sequence position (hidden states, logits).

/// `len() * width()` numbers, row-major; `width() > 0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rows<'a> {
    data: &'a [f32],
    width: usize,
}

/// Numbers that do not form whole rows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowsError {
    #[error("rows must be at least one value wide")]
    ZeroWidth,
    #[error("{len} values do not split into rows of {width}")]
    Ragged { len: usize, width: usize },
    #[error("row {index} has {len} values, the first row {width}")]
    UnequalRows {
        index: usize,
        len: usize,
        width: usize,
    },
}

impl<'a> Rows<'a> {
    /// Rows of `width` values over `data`.
    pub fn new(data: &'a [f32], width: usize) -> Result<Self, RowsError> {
        if width == 0 {
            return Err(RowsError::ZeroWidth);
        }
        if !data.len().is_multiple_of(width) {
            return Err(RowsError::Ragged {
                len: data.len(),
                width,
            });
        }
        Ok(Self { data, width })
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.data.len() / self.width
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Values per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Row `i`, if there is one.
    pub fn row(&self, i: usize) -> Option<&'a [f32]> {
        let start = i.checked_mul(self.width)?;
        self.data.get(start..start.checked_add(self.width)?)
    }

    /// Rows `start..end` as one flat slice (clamped to the rows there are).
    pub fn span(&self, start: usize, end: usize) -> &'a [f32] {
        let n = self.len();
        let (start, end) = (start.min(n), end.min(n));
        if start >= end {
            return &[];
        }
        &self.data[start * self.width..end * self.width]
    }

    /// All values, row after row.
    pub fn as_flat(&self) -> &'a [f32] {
        self.data
    }
}

/// Rows of equal length (as `agora_inference` returns captured hidden states) as one flat vector
/// and the width, ready for [`Rows::new`].
pub fn flatten(rows: &[Vec<f32>]) -> Result<(Vec<f32>, usize), RowsError> {
    let width = rows.first().map_or(0, Vec::len);
    if width == 0 {
        return Err(RowsError::ZeroWidth);
    }
    let mut flat = Vec::with_capacity(rows.len().saturating_mul(width));
    for (index, r) in rows.iter().enumerate() {
        if r.len() != width {
            return Err(RowsError::UnequalRows {
                index,
                len: r.len(),
                width,
            });
        }
        flat.extend_from_slice(r);
    }
    Ok((flat, width))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_split_and_reject_ragged_input() {
        let data = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let r = Rows::new(&data, 2).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r.row(1), Some(&data[2..4]));
        assert_eq!(r.row(3), None);
        assert_eq!(r.span(1, 9), &data[2..]);
        assert_eq!(r.span(2, 1), &[] as &[f32]);
        assert_eq!(
            Rows::new(&data, 4),
            Err(RowsError::Ragged { len: 6, width: 4 })
        );
        assert_eq!(Rows::new(&data, 0), Err(RowsError::ZeroWidth));
        let (flat, w) = flatten(&[vec![1.0, 2.0], vec![3.0, 4.0]]).unwrap();
        assert_eq!((flat, w), (vec![1.0, 2.0, 3.0, 4.0], 2));
        assert!(matches!(
            flatten(&[vec![1.0, 2.0], vec![3.0]]),
            Err(RowsError::UnequalRows { index: 1, .. })
        ));
        assert_eq!(flatten(&[]), Err(RowsError::ZeroWidth));
    }
}
