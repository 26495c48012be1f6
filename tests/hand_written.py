"""Reference networks written by hand, for shipped specs that torchvision does not
ship: LeNet-5 as the article lays it out (docs/specs.md), and a plain U-Net.
tests/equivalence/test_zoo.py holds the specs to them; tests/check/test_dataflow.py
compares the U-Net's module tree too."""

import torch
from torch import nn


class LeNet5(nn.Module):
    """The article's layout, written by hand as the reference."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool1(torch.relu(self.conv1(x)))
        x = self.pool2(torch.relu(self.conv2(x)))
        return self.fc3(self.fc2(self.fc1(torch.flatten(x, 1))))


class DoubleConv(nn.Module):
    def __init__(self, cin, cout, padding=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=padding)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=padding)
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu2(self.conv2(self.relu1(self.conv1(x))))


class UNet(nn.Module):
    """A plain U-Net written by hand: padded convs, 2x2 up-convolutions, skips by concat."""

    def __init__(self, depth=4, width=64, channels=1, num_classes=2):
        super().__init__()
        self.depth = depth
        self.enc0 = DoubleConv(channels, width)
        for i in range(1, depth + 1):
            setattr(self, f"pool{i}", nn.MaxPool2d(2))
            setattr(self, f"enc{i}", DoubleConv(width * 2 ** (i - 1), width * 2 ** i))
        for i in range(depth - 1, -1, -1):
            setattr(self, f"up{i}", nn.ConvTranspose2d(width * 2 ** (i + 1), width * 2 ** i, 2, stride=2))
            setattr(self, f"dec{i}", DoubleConv(width * 2 ** (i + 1), width * 2 ** i))
        self.outc = nn.Conv2d(width, num_classes, 1)

    def forward(self, x):
        skips = [self.enc0(x)]
        for i in range(1, self.depth + 1):
            skips.append(getattr(self, f"enc{i}")(getattr(self, f"pool{i}")(skips[-1])))
        y = skips.pop()
        for i in range(self.depth - 1, -1, -1):
            y = getattr(self, f"dec{i}")(torch.cat([skips[i], getattr(self, f"up{i}")(y)], 1))
        return self.outc(y)


class ValidUNet(nn.Module):
    """The paper's U-Net written by hand (Ronneberger et al., 2015, Figure 1): unpadded
    3x3 convs, so each encoder map is larger than the up-sampled map it joins and is
    centre-cropped to it ("copy and crop"); 572x572 in, 388x388 out at depth 4."""

    def __init__(self, depth=4, width=64, channels=1, num_classes=2):
        super().__init__()
        self.depth = depth
        self.enc0 = DoubleConv(channels, width, padding=0)
        for i in range(1, depth + 1):
            setattr(self, f"pool{i}", nn.MaxPool2d(2))
            setattr(self, f"enc{i}", DoubleConv(width * 2 ** (i - 1), width * 2 ** i, padding=0))
        for i in range(depth - 1, -1, -1):
            setattr(self, f"up{i}", nn.ConvTranspose2d(width * 2 ** (i + 1), width * 2 ** i, 2, stride=2))
            setattr(self, f"dec{i}", DoubleConv(width * 2 ** (i + 1), width * 2 ** i, padding=0))
        self.outc = nn.Conv2d(width, num_classes, 1)

    @staticmethod
    def crop(skip, like):
        h, w = like.shape[-2:]
        top, left = (skip.shape[-2] - h) // 2, (skip.shape[-1] - w) // 2
        return skip[:, :, top:top + h, left:left + w]

    def forward(self, x):
        skips = [self.enc0(x)]
        for i in range(1, self.depth + 1):
            skips.append(getattr(self, f"enc{i}")(getattr(self, f"pool{i}")(skips[-1])))
        y = skips.pop()
        for i in range(self.depth - 1, -1, -1):
            up = getattr(self, f"up{i}")(y)
            y = getattr(self, f"dec{i}")(torch.cat([self.crop(skips[i], up), up], 1))
        return self.outc(y)
