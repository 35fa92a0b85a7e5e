//! Typed tensors: what a tensor holds ([`TensorSpec`]), typed views on its bytes, and
//! conversions between real numbers and a quantized tensor's integers.
//!
//! Tensor data travels as bytes through interpreters and pipelines; a [`TensorSpec`] says how
//! to read them. [`Element`] names the Rust types that match an [`ElementType`], so that
//! [`TensorSpec::view`] (and the typed accessors built on it, such as
//! [`Output::get_as`](crate::pipeline::Output::get_as)) can hand out `&[f32]` or `&[i8]`
//! after checking the type; [`TensorSpec::quantize`] and [`TensorSpec::dequantize`] apply
//! the tensor's affine quantization, per channel where the model has one scale per slice.
//!
//! ```
//! use multitpu::model::{ElementType, Quantization};
//! use multitpu::tensor::TensorSpec;
//!
//! let quantization = Quantization { scale: vec![0.5], zero_point: vec![-3], ..Default::default() };
//! let spec = TensorSpec::new("scores", ElementType::I8, vec![1, 3], 3).with_quantization(quantization);
//! let q: Vec<i8> = spec.quantize(&[0.0, 1.0, -64.0])?;
//! assert_eq!(q, [-3, -1, -128]); // -64 / 0.5 - 3 saturates at i8::MIN
//! assert_eq!(spec.dequantize(&q)?, [0.0, 1.0, -62.5]);
//! // The wrong Rust type is an error naming the tensor and both types, not a panic.
//! assert!(matches!(spec.quantize::<u8>(&[0.0; 3]), Err(multitpu::Error::TensorType { .. })));
//! # Ok::<(), multitpu::Error>(())
//! ```

use crate::model::{ElementType, Quantization, Tensor};
use crate::{Error, Result};

/// Name, type, shape, size and quantization of one tensor, as a pipeline stage or an
/// interpreter reads or writes it.
///
/// The pipeline joins stages by tensor `name` (the way compiled Edge TPU segments are joined)
/// and checks `element_type` and `byte_size` when it connects a producer to a consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// Tensor name, unique among the pipeline's inputs and stage outputs.
    pub name: String,
    /// Element type.
    pub element_type: ElementType,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Size of the tensor's data in bytes.
    pub byte_size: usize,
    /// Affine quantization (`real = scale × (q − zero_point)`), for quantized tensors: one
    /// scale and zero point, or one per slice of dimension `quantized_dimension`. `None` for
    /// tensors without one (a spec never holds an empty scale list).
    pub quantization: Option<Quantization>,
}

impl TensorSpec {
    /// A spec without quantization from its parts.
    pub fn new(
        name: impl Into<String>,
        element_type: ElementType,
        shape: Vec<usize>,
        byte_size: usize,
    ) -> Self {
        TensorSpec {
            name: name.into(),
            element_type,
            shape,
            byte_size,
            quantization: None,
        }
    }

    /// A one-dimensional `u8` tensor of `byte_size` bytes.
    pub fn bytes(name: impl Into<String>, byte_size: usize) -> Self {
        TensorSpec::new(name, ElementType::U8, vec![byte_size], byte_size)
    }

    /// The same spec with `quantization` (dropped if it has no scale, as converters record
    /// an empty quantization on tensors that have none).
    pub fn with_quantization(mut self, quantization: Quantization) -> Self {
        self.quantization = (!quantization.scale.is_empty()).then_some(quantization);
        self
    }

    /// The spec of a model tensor with a static shape and a fixed size.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] for a dynamic shape (a negative dimension) or an element type
    /// without a fixed size (strings, resources, variants, int4).
    pub fn from_model_tensor(tensor: &Tensor<'_>) -> Result<Self> {
        let shape = tensor
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<std::result::Result<Vec<usize>, _>>()
            .map_err(|_| {
                Error::unsupported(format!(
                    "tensor `{}` has a dynamic shape {:?}",
                    tensor.name, tensor.shape
                ))
            })?;
        let byte_size = tensor.byte_size().ok_or_else(|| {
            Error::unsupported(format!(
                "tensor `{}` of type {:?} has no fixed byte size",
                tensor.name, tensor.element_type
            ))
        })?;
        let spec = TensorSpec::new(tensor.name.as_ref(), tensor.element_type, shape, byte_size);
        Ok(match &tensor.quantization {
            Some(q) => spec.with_quantization(q.clone()),
            None => spec,
        })
    }

    /// Number of elements: the product of the shape (1 for a scalar).
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether two specs describe the same data: same element type, byte size and
    /// quantization parameters (scale, zero point, axis; the recorded ranges and the shape
    /// may differ, e.g. a flat view of the same tensor).
    pub fn same_data(&self, other: &TensorSpec) -> bool {
        let params =
            |q: &Quantization| (q.scale.clone(), q.zero_point.clone(), q.quantized_dimension);
        self.element_type == other.element_type
            && self.byte_size == other.byte_size
            && self.quantization.as_ref().map(params) == other.quantization.as_ref().map(params)
    }

    /// The tensor's bytes as elements of `T`, without copying.
    ///
    /// # Errors
    ///
    /// [`Error::TensorType`] if `T` is not the tensor's element type, [`Error::TensorSize`]
    /// if `data` is not `byte_size` long, [`Error::TensorAlignment`] if `data` is not aligned
    /// for `T` (buffers of pipelines and interpreters always are; [`to_f32`](Self::to_f32)
    /// copies instead).
    pub fn view<'a, T: Element>(&self, data: &'a [u8]) -> Result<&'a [T]> {
        self.check_type::<T>()?;
        Error::check_tensor_size(&self.name, self.byte_size, data.len())?;
        bytemuck::try_cast_slice(data).map_err(|_| Error::TensorAlignment {
            tensor: self.name.clone(),
            alignment: std::mem::align_of::<T>(),
        })
    }

    /// The tensor's bytes as mutable elements of `T`, without copying. Errors as
    /// [`view`](Self::view).
    ///
    /// # Errors
    ///
    /// As [`view`](Self::view).
    pub fn view_mut<'a, T: Element>(&self, data: &'a mut [u8]) -> Result<&'a mut [T]> {
        self.check_type::<T>()?;
        Error::check_tensor_size(&self.name, self.byte_size, data.len())?;
        bytemuck::try_cast_slice_mut(data).map_err(|_| Error::TensorAlignment {
            tensor: self.name.clone(),
            alignment: std::mem::align_of::<T>(),
        })
    }

    /// Quantizes real values into the tensor's integers: `q = round(x / scale) + zero_point`,
    /// saturated to `T`'s range, with the scale and zero point of each value's channel.
    /// (NaN becomes the zero point.)
    ///
    /// # Errors
    ///
    /// [`Error::TensorType`] if `T` is not the tensor's element type, [`Error::NotQuantized`]
    /// if the tensor has no quantization, [`Error::ElementCount`] if `values` does not hold
    /// one value per element, [`Error::Invalid`] if the per-channel parameters do not fit
    /// the shape.
    pub fn quantize<T: Quantized>(&self, values: &[f32]) -> Result<Vec<T>> {
        let channels = self.channels::<T>(values.len())?;
        Ok(values
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let (scale, zero_point) = channels.at(i);
                // `as` saturates (and maps NaN to 0), so extreme values clamp below.
                let q = (x / scale).round() as i64;
                T::saturating_from(q.saturating_add(zero_point))
            })
            .collect())
    }

    /// Dequantizes the tensor's integers into real values: `x = scale × (q − zero_point)`,
    /// with the scale and zero point of each value's channel.
    ///
    /// # Errors
    ///
    /// As [`quantize`](Self::quantize).
    pub fn dequantize<T: Quantized>(&self, values: &[T]) -> Result<Vec<f32>> {
        let channels = self.channels::<T>(values.len())?;
        Ok(values
            .iter()
            .enumerate()
            .map(|(i, &q)| {
                let (scale, zero_point) = channels.at(i);
                scale * (q.widen() - zero_point) as f32
            })
            .collect())
    }

    /// The tensor's bytes as real values, whatever its type: dequantized for `U8`, `I8`,
    /// `I16` and `I32` tensors with quantization, copied for `F32` tensors.
    ///
    /// # Errors
    ///
    /// [`Error::TensorType`] (expecting `F32`) for other types and for integer tensors
    /// without quantization; [`Error::TensorSize`] if `data` is not `byte_size` long.
    pub fn to_f32(&self, data: &[u8]) -> Result<Vec<f32>> {
        Error::check_tensor_size(&self.name, self.byte_size, data.len())?;
        fn dequantize<T: Quantized>(spec: &TensorSpec, data: &[u8]) -> Result<Vec<f32>> {
            spec.dequantize(&copy_to_vec::<T>(data))
        }
        match (self.element_type, &self.quantization) {
            (ElementType::F32, _) => Ok(copy_to_vec(data)),
            (ElementType::U8, Some(_)) => dequantize::<u8>(self, data),
            (ElementType::I8, Some(_)) => dequantize::<i8>(self, data),
            (ElementType::I16, Some(_)) => dequantize::<i16>(self, data),
            (ElementType::I32, Some(_)) => dequantize::<i32>(self, data),
            (actual, _) => Err(Error::TensorType {
                tensor: self.name.clone(),
                expected: ElementType::F32,
                actual,
            }),
        }
    }

    /// `Ok` if `T` is the tensor's element type.
    pub(crate) fn check_type<T: Element>(&self) -> Result<()> {
        if T::TYPE == self.element_type {
            Ok(())
        } else {
            Err(Error::TensorType {
                tensor: self.name.clone(),
                expected: T::TYPE,
                actual: self.element_type,
            })
        }
    }

    /// The quantization channels for `len` values of type `T`, after checking type, count
    /// and parameters.
    fn channels<T: Quantized>(&self, len: usize) -> Result<Channels<'_>> {
        self.check_type::<T>()?;
        if len != self.num_elements() {
            return Err(Error::ElementCount {
                tensor: self.name.clone(),
                expected: self.num_elements(),
                actual: len,
            });
        }
        let q = self
            .quantization
            .as_ref()
            .filter(|q| !q.scale.is_empty())
            .ok_or_else(|| Error::NotQuantized {
                tensor: self.name.clone(),
            })?;
        let invalid = |reason: String| {
            Error::invalid(
                "tensor quantization",
                format!("tensor `{}`: {reason}", self.name),
            )
        };
        if q.zero_point.len() != q.scale.len() && q.zero_point.len() != 1 {
            return Err(invalid(format!(
                "{} scales but {} zero points",
                q.scale.len(),
                q.zero_point.len()
            )));
        }
        if q.scale.len() == 1 {
            return Ok(Channels {
                scale: &q.scale,
                zero_point: &q.zero_point,
                inner: 1,
            });
        }
        let axis = usize::try_from(q.quantized_dimension)
            .ok()
            .filter(|&axis| self.shape.get(axis) == Some(&q.scale.len()))
            .ok_or_else(|| {
                invalid(format!(
                    "{} scales do not match dimension {} of shape {:?}",
                    q.scale.len(),
                    q.quantized_dimension,
                    self.shape
                ))
            })?;
        Ok(Channels {
            scale: &q.scale,
            zero_point: &q.zero_point,
            inner: self.shape[axis + 1..].iter().product(),
        })
    }
}

/// `data` copied into elements of `T` (so into aligned memory: `data` may be any byte slice
/// of whole elements).
fn copy_to_vec<T: Element>(data: &[u8]) -> Vec<T> {
    let count = data.len() / std::mem::size_of::<T>();
    let mut values = vec![<T as bytemuck::Zeroable>::zeroed(); count];
    let whole = count * std::mem::size_of::<T>();
    bytemuck::cast_slice_mut(&mut values).copy_from_slice(&data[..whole]);
    values
}

/// Scale and zero point by element index: element `i` is in channel `(i / inner) % channels`.
struct Channels<'a> {
    scale: &'a [f32],
    zero_point: &'a [i64],
    /// Elements per step of the quantized dimension.
    inner: usize,
}

impl Channels<'_> {
    fn at(&self, i: usize) -> (f32, i64) {
        let channel = (i / self.inner.max(1)) % self.scale.len();
        let zero_point = self
            .zero_point
            .get(channel)
            .or(self.zero_point.first())
            .copied()
            .unwrap_or(0);
        (self.scale[channel], zero_point)
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A Rust type that tensor data of one [`ElementType`] can be viewed as.
///
/// Implemented for `f32`, `f64`, `i8`, `u8`, `i16`, `u16`, `i32`, `u32`, `i64` and `u64`;
/// sealed, so that every implementation names its type correctly.
pub trait Element: bytemuck::Pod + sealed::Sealed {
    /// The element type of tensors holding this type.
    const TYPE: ElementType;
}

/// An integer type of quantized tensors: `u8`, `i8`, `i16` or `i32`.
pub trait Quantized: Element {
    /// `value` clamped to the type's range.
    fn saturating_from(value: i64) -> Self;
    /// The value as an `i64`.
    fn widen(self) -> i64;
}

macro_rules! element {
    ($($t:ty => $e:ident),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const TYPE: ElementType = ElementType::$e;
        }
    )*};
}

element!(f32 => F32, f64 => F64, i8 => I8, u8 => U8, i16 => I16, u16 => U16, i32 => I32,
    u32 => U32, i64 => I64, u64 => U64);

macro_rules! quantized {
    ($($t:ty),*) => {$(
        impl Quantized for $t {
            fn saturating_from(value: i64) -> Self {
                value.clamp(<$t>::MIN.into(), <$t>::MAX.into()) as $t
            }
            fn widen(self) -> i64 {
                self.into()
            }
        }
    )*};
}

quantized!(u8, i8, i16, i32);

#[cfg(test)]
mod tests {
    use super::*;

    fn per_tensor(scale: f32, zero_point: i64) -> Quantization {
        Quantization {
            scale: vec![scale],
            zero_point: vec![zero_point],
            ..Default::default()
        }
    }

    #[test]
    fn quantize_rounds_half_away_from_zero_and_saturates() {
        let spec = TensorSpec::new("x", ElementType::U8, vec![6], 6)
            .with_quantization(per_tensor(0.5, 128));
        let q: Vec<u8> = spec
            .quantize(&[0.0, 0.25, -0.25, 1e9, -1e9, f32::NAN])
            .unwrap();
        assert_eq!(q, [128, 129, 127, 255, 0, 128]);
        assert_eq!(
            spec.dequantize(&q).unwrap(),
            [0.0, 0.5, -0.5, 63.5, -64.0, 0.0]
        );
    }

    #[test]
    fn per_channel_parameters_follow_the_quantized_dimension() {
        // Shape [2, 3] quantized along dimension 1: element i is in channel i % 3.
        let q = Quantization {
            scale: vec![1.0, 2.0, 4.0],
            zero_point: vec![0, 1, -1],
            quantized_dimension: 1,
            ..Default::default()
        };
        let spec = TensorSpec::new("w", ElementType::I8, vec![2, 3], 6).with_quantization(q);
        let values = [4.0, 4.0, 4.0, -8.0, -8.0, -8.0];
        let q: Vec<i8> = spec.quantize(&values).unwrap();
        assert_eq!(q, [4, 3, 0, -8, -3, -3]);
        assert_eq!(spec.dequantize(&q).unwrap(), values);
        // Along dimension 0 instead: element i is in channel i / 3.
        let q0 = Quantization {
            scale: vec![1.0, 2.0],
            zero_point: vec![0, 0],
            quantized_dimension: 0,
            ..Default::default()
        };
        let spec0 = TensorSpec::new("w", ElementType::I16, vec![2, 3], 12).with_quantization(q0);
        let q: Vec<i16> = spec0.quantize(&values).unwrap();
        assert_eq!(q, [4, 4, 4, -4, -4, -4]);
    }

    #[test]
    fn wrong_type_count_or_parameters_are_errors() {
        let spec =
            TensorSpec::new("x", ElementType::I8, vec![2], 2).with_quantization(per_tensor(1.0, 0));
        let error = spec.quantize::<u8>(&[0.0, 0.0]).unwrap_err();
        assert!(
            matches!(&error, Error::TensorType { tensor, expected: ElementType::U8, actual: ElementType::I8 } if tensor == "x"),
            "{error}"
        );
        assert!(matches!(
            spec.quantize::<i8>(&[0.0]),
            Err(Error::ElementCount {
                expected: 2,
                actual: 1,
                ..
            })
        ));
        let plain = TensorSpec::new("y", ElementType::I8, vec![2], 2);
        assert!(matches!(
            plain.dequantize::<i8>(&[0, 0]),
            Err(Error::NotQuantized { ref tensor }) if tensor == "y"
        ));
        let mismatched = Quantization {
            scale: vec![1.0, 1.0, 1.0],
            zero_point: vec![0, 0, 0],
            quantized_dimension: 0,
            ..Default::default()
        };
        let spec = TensorSpec::new("z", ElementType::I8, vec![2], 2).with_quantization(mismatched);
        assert!(matches!(
            spec.quantize::<i8>(&[0.0, 0.0]),
            Err(Error::Invalid { .. })
        ));
    }

    #[test]
    fn views_check_type_size_and_alignment() {
        let spec = TensorSpec::new("f", ElementType::F32, vec![2], 8);
        let words = [1.5f32.to_bits(), (-2.0f32).to_bits(), 0];
        let bytes: &[u8] = bytemuck::cast_slice(&words);
        assert_eq!(spec.view::<f32>(&bytes[..8]).unwrap(), [1.5, -2.0]);
        assert!(matches!(
            spec.view::<i32>(&bytes[..8]),
            Err(Error::TensorType { .. })
        ));
        assert!(matches!(
            spec.view::<f32>(&bytes[..4]),
            Err(Error::TensorSize { .. })
        ));
        // One byte in: misaligned for f32, an error rather than a panic.
        assert!(matches!(
            spec.view::<f32>(&bytes[1..9]),
            Err(Error::TensorAlignment { alignment: 4, .. })
        ));
        // `to_f32` copies, so any slice works.
        assert_eq!(spec.to_f32(&bytes[..8]).unwrap(), [1.5, -2.0]);
        let mut shifted = [0u8; 9];
        shifted[1..].copy_from_slice(&bytes[..8]);
        assert_eq!(spec.to_f32(&shifted[1..]).unwrap(), [1.5, -2.0]);
    }

    #[test]
    fn to_f32_dequantizes_integer_tensors_and_refuses_others() {
        let spec = TensorSpec::new("q", ElementType::I16, vec![2], 4)
            .with_quantization(per_tensor(0.25, 2));
        let data: Vec<u8> = [6i16, -2].iter().flat_map(|v| v.to_ne_bytes()).collect();
        assert_eq!(spec.to_f32(&data).unwrap(), [1.0, -1.0]);
        let plain = TensorSpec::new("p", ElementType::I16, vec![2], 4);
        assert!(matches!(
            plain.to_f32(&data),
            Err(Error::TensorType {
                expected: ElementType::F32,
                actual: ElementType::I16,
                ..
            })
        ));
    }

    #[test]
    fn empty_quantization_is_no_quantization() {
        let spec = TensorSpec::bytes("b", 4).with_quantization(Quantization::default());
        assert_eq!(spec.quantization, None);
        let a = TensorSpec::new("a", ElementType::I8, vec![4], 4);
        let b = TensorSpec::new("a", ElementType::I8, vec![2, 2], 4);
        assert!(a.same_data(&b));
        assert!(!a.same_data(&b.clone().with_quantization(per_tensor(1.0, 0))));
    }
}
