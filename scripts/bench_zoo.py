"""Converts the benchmark zoo: the architectures of Coral's published Edge TPU benchmark
table that keras.applications rebuilds, with random weights, quantized by the same TFLite
converter as the test zoo, so latency and splitting are measured on full-size models
anywhere.

    python bench_zoo.py OUT_DIR

Run by `scripts/fetch-zoo --bench` inside the test zoo's virtual environment; the
conversion itself is scripts/zoo.py's `convert`. Each model is full-integer quantized
(every operator int8) with uint8 input and output, as Coral's benchmark files are. An Edge
TPU's latency depends on the shapes and operators, not on the weights' values, so these are
random (weights=None: nothing is downloaded) but drawn from fixed seeds and calibrated on a
fixed random representative dataset: a run gives the same files on the same TensorFlow
build.

Besides the models, the directory gets MANIFEST.tsv: one line per model with the file name,
its parameter count, its input size and the keras.applications model it came from, and a
first line naming the converter.
"""

import gc
import os
import sys
import time

# zoo first: it sets TensorFlow's environment (quiet logs, oneDNN off) before importing it.
from zoo import convert

import numpy as np
import tensorflow as tf

keras = tf.keras
applications = tf.keras.applications

# Four calibration samples: the ranges only need to be plausible, not representative, since
# the weights are random and their values do not matter for latency; calibration runs the
# float model once per sample, which at 299x299 or on VGG takes seconds each on two cores.
CALIBRATION_SAMPLES = 4

# (file name, keras.applications model, its arguments besides the common ones, input side)
BENCH = [
    ("mobilenet_v1_1.0_224.tflite", "MobileNet", {"alpha": 1.0}, 224),
    ("mobilenet_v2_1.0_224.tflite", "MobileNetV2", {"alpha": 1.0}, 224),
    ("densenet121_224.tflite", "DenseNet121", {}, 224),
    ("resnet50_v1_299.tflite", "ResNet50", {}, 299),
    ("resnet50_v2_299.tflite", "ResNet50V2", {}, 299),
    ("resnet152_v2_299.tflite", "ResNet152V2", {}, 299),
    ("inception_resnet_v2_299.tflite", "InceptionResNetV2", {}, 299),
    ("inception_v3_299.tflite", "InceptionV3", {}, 299),
    ("vgg16_224.tflite", "VGG16", {}, 224),
    ("vgg19_224.tflite", "VGG19", {}, 224),
]


def randomize_batch_norms(model, seed):
    """Gives every batch normalization random statistics, scale and offset, as training
    would. With Keras' initial ones (mean and offset 0) the converter drops the ADD of each
    batch normalization it cannot fold into a convolution (62 in DenseNet121, 51 in
    ResNet152V2): the operators would not be a trained model's."""
    rng = np.random.default_rng(seed)
    ranges = {
        "gamma": (0.5, 1.5),
        "beta": (-0.2, 0.2),
        "moving_mean": (-0.2, 0.2),
        "moving_variance": (0.5, 1.5),
    }
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            # The Inceptions' have no gamma (scale=False): those attributes are None.
            for attribute, (low, high) in ranges.items():
                variable = getattr(layer, attribute)
                if variable is not None:
                    variable.assign(rng.uniform(low, high, variable.shape).astype(np.float32))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bench_zoo.py OUT_DIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    manifest = [f"# converter: tensorflow {tf.__version__}"]
    for seed, (name, application, arguments, side) in enumerate(BENCH, start=1):
        keras.utils.set_random_seed(seed)
        # A batch of 1, as in Coral's files: with Keras' unknown batch the input's shape
        # signature would be dynamic, and MobileNet's Reshape would become int32 SHAPE,
        # STRIDED_SLICE and PACK operators feeding a RESHAPE sized only at run time.
        model = getattr(applications, application)(
            input_tensor=keras.Input((side, side, 3), batch_size=1),
            weights=None,
            include_top=True,
            classes=1000,
            **arguments,
        )
        randomize_batch_norms(model, seed)
        parameters = model.count_params()
        print(f"bench zoo: converting {name} ({parameters} parameters)", flush=True)
        start = time.monotonic()
        flatbuffer = convert(model, seed, tf.uint8, CALIBRATION_SAMPLES)
        seconds = time.monotonic() - start
        partial = os.path.join(out, name + ".partial")
        with open(partial, "wb") as f:
            f.write(flatbuffer)
        os.replace(partial, os.path.join(out, name))
        print(f"bench zoo: {name}: {len(flatbuffer)} bytes in {seconds:.0f} s", flush=True)
        arguments_text = ", ".join(f"{key}={value}" for key, value in arguments.items())
        manifest.append(
            f"{name}\t{parameters}\t{side}x{side}x3\t"
            f"keras.applications.{application}({arguments_text})"
        )
        # One model at a time: VGG's float graph alone takes gigabytes.
        del model, flatbuffer
        keras.backend.clear_session()
        gc.collect()
    with open(os.path.join(out, "MANIFEST.tsv"), "w") as f:
        f.write("\n".join(manifest) + "\n")


if __name__ == "__main__":
    main()
