"""The same network written by hand, as a paper's code release would give it."""
from torch import nn


def conv_bn(c_in, c_out, stride=1):
    block = nn.Sequential()
    block.conv = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
    block.bn = nn.BatchNorm2d(c_out)
    block.add_module("2", nn.ReLU(inplace=True))
    return block


class Tiny(nn.Module):
    def __init__(self, width=16, num_classes=10):
        super().__init__()
        self.stem = conv_bn(1, width)
        self.stage1 = nn.Sequential(conv_bn(width, 2 * width, 2), conv_bn(2 * width, 2 * width))
        self.stage2 = nn.Sequential(conv_bn(2 * width, 4 * width, 2), conv_bn(4 * width, 4 * width))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        x = self.stage2(self.stage1(self.stem(x)))
        return self.fc(self.flatten(self.pool(x)))
