"""Tutorial task 9: VGG16 from the model zoo and its summary (138,357,544 parameters, as Keras), with
each layer's receptive field and jump in input pixels. Quick mode (CNNKIT_EXAMPLE_QUICK=1) builds it
for 32x32 images and 10 classes, which has the same 13 convolutions and so the same table shape."""

from _common import QUICK

from cnnkit import applications

if QUICK:
    model = applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=10)
else:
    model = applications.VGG16(weights=None)      # input (224, 224, 3), 1000 classes
model.summary(receptive_field=True)
