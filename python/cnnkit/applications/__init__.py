"""The model zoo: classic CNN architectures in one line, like ``keras.applications``.

``applications.VGG16(weights=None)`` builds VGG16 for 224x224x3 images and 1000 classes (Keras'
138,357,544 parameters); every model takes ``include_top``, ``weights``, ``input_tensor``,
``input_shape``, ``pooling``, ``classes`` and ``classifier_activation`` with Keras' meaning.
VGG16/19, ResNet50/101/152 and DenseNet121/169/201 have Keras' layer names, so Keras' ImageNet files
load onto them: ``weights="imagenet"`` looks for Keras' file (e.g.
``vgg16_weights_tf_dim_ordering_tf_kernels.h5``) in ``~/.cnnkit/weights`` (or ``$CNNKIT_WEIGHTS_DIR``)
and Keras' cache ``~/.keras/models``; it never downloads. ``weights="path/to/file"`` loads a Keras
``.h5`` / ``.weights.h5`` file (needs h5py: ``pip install 'cnnkit[h5]'``) or a cnnkit
``save_weights`` file.

Images for the ImageNet weights are scaled as Keras scales them: ``applications.vgg.preprocess_input``
(also ``resnet``; "caffe": BGR minus the channel means) and ``applications.densenet.preprocess_input``
("torch": [0, 1], then the channel means and deviations).

Not here: MobileNet-style models, which need depthwise convolution kernels that cnnkit does not
have yet.
"""

from . import densenet, imagenet_utils, resnet, vgg
from .densenet import DenseNet121, DenseNet169, DenseNet201
from .inception import GoogLeNet, InceptionV1, inception_module
from .lenet import AlexNet, LeNet5
from .resnet import ResNet18, ResNet34, ResNet50, ResNet101, ResNet152
from .vgg import VGG16, VGG19
from .weights import imagenet_weights_path, load_keras_weights, weights_dirs

__all__ = ["LeNet5", "AlexNet", "VGG16", "VGG19", "GoogLeNet", "InceptionV1", "inception_module", "ResNet18",
           "ResNet34", "ResNet50", "ResNet101", "ResNet152", "DenseNet121", "DenseNet169", "DenseNet201",
           "load_keras_weights", "imagenet_weights_path", "weights_dirs", "preprocess_input", "vgg", "resnet",
           "densenet", "imagenet_utils"]
preprocess_input = imagenet_utils.preprocess_input
