"""The same work as the default pipeline, as one plain untracked script: the yardstick for the pipeline's
overhead. Load digits, split and standardise, train the default MLP for the same epochs, score it on the
test split, and write the TorchScript deploy artifact."""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

started = time.time()
epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
x, y = load_digits(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=42)
mean, std = x_train.mean(0), x_train.std(0) + 1e-6
x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
torch.manual_seed(42)
model = torch.nn.Sequential(
    torch.nn.Linear(64, 128),
    torch.nn.ReLU(),
    torch.nn.Dropout(0.2),
    torch.nn.Linear(128, 64),
    torch.nn.ReLU(),
    torch.nn.Linear(64, 10),
)
optimizer = torch.optim.Adam(model.parameters(), 1e-3)
features, labels = torch.tensor(x_train, dtype=torch.float32), torch.tensor(y_train)
for _ in range(epochs):
    model.train()
    order = torch.randperm(len(features))
    for start in range(0, len(features), 64):
        batch = order[start : start + 64]
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(features[batch]), labels[batch]).backward()
        optimizer.step()
model.eval()
accuracy = (model(torch.tensor(x_test, dtype=torch.float32)).argmax(1).numpy() == y_test).mean()
torch.jit.script(model).save(str(Path(tempfile.mkdtemp()) / "model.pt"))
print(f"accuracy {accuracy:.4f} in {time.time() - started:.2f} s", np.__name__)
