"""Converts the test zoo: small Keras models with random weights, quantized by the real
TFLite converter, so the real-model test suites run on genuine converter output anywhere.

    python zoo.py OUT_DIR

Run by scripts/fetch-zoo inside its private virtual environment, which pins the TensorFlow
version. Every model is built from fixed seeds and calibrated on a fixed random
representative dataset, so a run gives the same files on the same TensorFlow build.

Why TensorFlow 2.12: multitpu runs models on the TFLite 2.9 C runtime, and a converter
newer than its runtime may emit operator versions that runtime refuses. 2.12 is the oldest
TensorFlow with wheels for CPython 3.11; scripts/test loads, validates and invokes every zoo
model on the 2.9 runtime, so a converter that emits something 2.9 cannot run fails there.

Besides the models, the directory gets MANIFEST.tsv: one line per model with the file name,
its parameter count and what it exercises, and a first line naming the converter.
"""

import functools
import os
import sys

# Before TensorFlow is imported: quiet logs, and oneDNN off because its kernels may sum in
# a different order from run to run, which could move a calibration range.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

keras = tf.keras
layers = tf.keras.layers

# He initialization keeps the activations' scale through the ReLUs of untrained layers, so
# the outputs vary with the input instead of settling on a constant.
Conv2D = functools.partial(layers.Conv2D, kernel_initializer="he_normal")
DepthwiseConv2D = functools.partial(layers.DepthwiseConv2D, depthwise_initializer="he_normal")
SeparableConv2D = functools.partial(
    layers.SeparableConv2D,
    depthwise_initializer="he_normal",
    pointwise_initializer="he_normal",
)
Dense = functools.partial(layers.Dense, kernel_initializer="he_normal")

CALIBRATION_SAMPLES = 32


def representative(inputs, seed, samples=CALIBRATION_SAMPLES):
    """A representative dataset of `samples` random float inputs for `inputs`, a dict of
    input names and shapes. Keyed by name: the converted model may order its inputs
    otherwise than Keras does."""

    def generate():
        rng = np.random.default_rng(seed)
        for _ in range(samples):
            yield {
                name: rng.uniform(-1.0, 1.0, size=(1, *shape)).astype(np.float32)
                for name, shape in inputs.items()
            }

    return generate


def convert(model, seed, io_type=None, samples=CALIBRATION_SAMPLES):
    """Post-training full-integer quantization; `io_type` None keeps float inputs and outputs
    (the converter adds QUANTIZE / DEQUANTIZE), else the interface takes tf.int8 or tf.uint8."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    inputs = {name: tuple(x.shape[1:]) for name, x in zip(model.input_names, model.inputs)}
    converter.representative_dataset = representative(inputs, seed, samples)
    # Every operator int8: a kernel the converter cannot quantize is an error, not a float op.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io_type is not None:
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
    return converter.convert()


def cnn_float_io():
    """CONV_2D, MAX_POOL_2D, RESHAPE, FULLY_CONNECTED, SOFTMAX behind float QUANTIZE /
    DEQUANTIZE at the interface."""
    x = keras.Input((28, 28, 1), name="image")
    y = Conv2D(16, 3, activation="relu")(x)
    y = layers.MaxPooling2D()(y)
    y = Conv2D(32, 3, activation="relu")(y)
    y = layers.MaxPooling2D()(y)
    y = layers.Flatten()(y)
    y = Dense(64, activation="relu")(y)
    y = Dense(10, activation="softmax", name="scores")(y)
    return keras.Model(x, y, name="cnn_int8_float_io")


def cnn_int8_io():
    """Strided and 'same' convolutions, AVERAGE_POOL_2D, FULLY_CONNECTED on int8 I/O."""
    x = keras.Input((32, 32, 3), name="image")
    y = Conv2D(16, 3, padding="same", activation="relu")(x)
    y = layers.AveragePooling2D()(y)
    y = Conv2D(32, 3, strides=2, padding="same", activation="relu")(y)
    y = Conv2D(32, 3, padding="same", activation="relu")(y)
    y = layers.Flatten()(y)
    y = Dense(10, name="logits")(y)
    return keras.Model(x, y, name="cnn_int8_io")


def inception_uint8_io():
    """Parallel branches joined by CONCATENATION, 'valid' padding, MEAN (global average
    pooling), on uint8 I/O."""
    x = keras.Input((32, 32, 3), name="image")
    stem = Conv2D(16, 3, activation="relu")(x)
    a = Conv2D(8, 1, activation="relu")(stem)
    b = Conv2D(8, 3, padding="same", activation="relu")(stem)
    c = layers.MaxPooling2D(3, strides=1, padding="same")(stem)
    y = layers.Concatenate()([a, b, c])
    y = Conv2D(32, 3, strides=2, activation="relu")(y)
    y = layers.GlobalAveragePooling2D()(y)
    y = Dense(10, name="logits")(y)
    return keras.Model(x, y, name="inception_uint8_io")


def resnet():
    """Residual blocks: ADD joins a branch of two convolutions (batch norm folded) to its
    skip connection, one of them through a strided 1x1 projection."""

    def block(y, filters, stride):
        shortcut = y
        if stride != 1 or y.shape[-1] != filters:
            shortcut = Conv2D(filters, 1, strides=stride)(y)
            shortcut = layers.BatchNormalization()(shortcut)
        z = Conv2D(filters, 3, strides=stride, padding="same")(y)
        z = layers.BatchNormalization()(z)
        z = layers.ReLU()(z)
        z = Conv2D(filters, 3, padding="same")(z)
        z = layers.BatchNormalization()(z)
        return layers.ReLU()(layers.Add()([z, shortcut]))

    x = keras.Input((32, 32, 3), name="image")
    y = Conv2D(16, 3, padding="same")(x)
    y = layers.BatchNormalization()(y)
    y = layers.ReLU()(y)
    y = block(y, 16, 1)
    y = block(y, 16, 1)
    y = block(y, 32, 2)
    y = block(y, 32, 1)
    y = layers.GlobalAveragePooling2D()(y)
    y = Dense(10, name="logits")(y)
    return keras.Model(x, y, name="resnet_int8")


def depthwise_separable():
    """MobileNet's building blocks: DEPTHWISE_CONV_2D (strided, with PAD in front as
    keras.applications does), 1x1 CONV_2D, SeparableConv2D, RELU6, a depth multiplier."""
    x = keras.Input((48, 48, 3), name="image")
    y = Conv2D(16, 3, strides=2, padding="same")(x)
    y = layers.ReLU(6.0)(y)
    y = DepthwiseConv2D(3, padding="same")(y)
    y = layers.ReLU(6.0)(y)
    y = Conv2D(32, 1)(y)
    y = layers.ReLU(6.0)(y)
    y = layers.ZeroPadding2D(((0, 1), (0, 1)))(y)
    y = DepthwiseConv2D(3, strides=2, depth_multiplier=2)(y)
    y = layers.ReLU(6.0)(y)
    y = SeparableConv2D(64, 3, padding="same", activation="relu")(y)
    y = layers.GlobalAveragePooling2D()(y)
    y = Dense(10, name="logits")(y)
    return keras.Model(x, y, name="depthwise_separable_int8")


def lstm():
    """A Keras LSTM over 28 steps of 28 features: one UNIDIRECTIONAL_SEQUENCE_LSTM with int8
    weights and int16 cell state, then FULLY_CONNECTED, on float I/O."""
    # A fixed batch: with batch None the converter cannot fuse the loop into one operator.
    x = keras.Input((28, 28), batch_size=1, name="rows")
    y = layers.LSTM(32)(x)
    y = Dense(10, name="logits")(y)
    return keras.Model(x, y, name="lstm_int8_float_io")


def mobilenet_v2_large_head():
    """keras.applications' MobileNetV2 (alpha 1.0, 224x224, random weights) with a
    5089-class head, iNaturalist 2017's class count: 8.8 M parameters, more than the 8 MiB an
    Edge TPU caches, so planning has to split it. Logits out: a softmax over 5089 random
    scores would quantize to all zeros."""
    return keras.applications.MobileNetV2(
        input_shape=(224, 224, 3),
        alpha=1.0,
        weights=None,
        classes=5089,
        classifier_activation=None,
    )


def multi_io():
    """Two inputs and three outputs: an image trunk whose feature map is both an output and
    the input of two heads (class scores and a box), the box head also reading a second,
    vector input through CONCATENATION."""
    image = keras.Input((24, 24, 3), name="image")
    extra = keras.Input((4,), name="extra")
    features = Conv2D(8, 3, strides=2, padding="same", activation="relu")(image)
    features = Conv2D(16, 3, strides=2, padding="same", activation="relu", name="features")(
        features
    )
    pooled = layers.GlobalAveragePooling2D()(features)
    scores = Dense(5, activation="softmax", name="scores")(pooled)
    box = layers.Concatenate()([pooled, extra])
    box = Dense(16, activation="relu")(box)
    box = Dense(4, name="box")(box)
    return keras.Model([image, extra], [scores, box, features], name="multi_io_int8")


# (file name, builder, interface type, calibration samples, what it exercises)
ZOO = [
    ("cnn_int8_float_io.tflite", cnn_float_io, None, CALIBRATION_SAMPLES,
     "int8 PTQ, float I/O (QUANTIZE/DEQUANTIZE), conv, max pool, fully connected, softmax"),
    ("cnn_int8_io.tflite", cnn_int8_io, tf.int8, CALIBRATION_SAMPLES,
     "int8 PTQ, int8 I/O, strided and same-padded conv, average pool"),
    ("inception_uint8_io.tflite", inception_uint8_io, tf.uint8, CALIBRATION_SAMPLES,
     "int8 PTQ, uint8 I/O, parallel branches joined by concatenation, mean"),
    ("resnet_int8.tflite", resnet, tf.int8, CALIBRATION_SAMPLES,
     "residual network: add of skip connections, strided 1x1 projection"),
    ("depthwise_separable_int8.tflite", depthwise_separable, tf.int8, CALIBRATION_SAMPLES,
     "depthwise separable convolutions, pad, relu6, depth multiplier"),
    ("lstm_int8_float_io.tflite", lstm, None, CALIBRATION_SAMPLES,
     "LSTM: unidirectional sequence LSTM with int8 weights, float I/O"),
    ("mobilenet_v2_1.0_224_5089_int8.tflite", mobilenet_v2_large_head, tf.int8, 8,
     "MobileNetV2 at 224x224 with random weights, 8.8 M parameters (over 8 MiB)"),
    ("multi_io_int8.tflite", multi_io, tf.int8, CALIBRATION_SAMPLES,
     "two inputs, three outputs, an output also read by later operators"),
]


def set_batch_norm_statistics(model, seed):
    """Gives every batch normalization a random scale and offset, and the mean and variance
    of its input on a random batch, as training would: the folded convolutions then keep the
    activations' scale through a deep network (MobileNetV2's outputs would otherwise hardly
    depend on its input)."""
    norms = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    if not norms:
        return
    rng = np.random.default_rng(seed)
    for layer in norms:
        gamma, beta, _, _ = layer.get_weights()
        layer.gamma.assign(rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32))
        layer.beta.assign(rng.uniform(-0.2, 0.2, beta.shape).astype(np.float32))
        layer.momentum = 0.0  # the moving statistics become this batch's
    batch = [rng.uniform(-1.0, 1.0, size=(8, *x.shape[1:])).astype(np.float32) for x in model.inputs]
    model(batch, training=True)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: zoo.py OUT_DIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    manifest = [f"# converter: tensorflow {tf.__version__}"]
    for seed, (name, build, io_type, samples, exercises) in enumerate(ZOO, start=1):
        keras.utils.set_random_seed(seed)
        model = build()
        set_batch_norm_statistics(model, seed)
        print(f"zoo: converting {name} ({model.count_params()} parameters)", flush=True)
        flatbuffer = convert(model, seed, io_type, samples)
        partial = os.path.join(out, name + ".partial")
        with open(partial, "wb") as f:
            f.write(flatbuffer)
        os.replace(partial, os.path.join(out, name))
        manifest.append(f"{name}\t{model.count_params()}\t{exercises}")
    with open(os.path.join(out, "MANIFEST.tsv"), "w") as f:
        f.write("\n".join(manifest) + "\n")


if __name__ == "__main__":
    main()
