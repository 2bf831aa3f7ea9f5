"""Reference for Tessera's KNN.classify: DINO's weighted k-NN vote (eval_knn.py:knn_classifier).

Random clustered features (10 classes, D 32; 400 train rows, 200 test rows), L2-normalised in float32,
are classified by DINO's knn_classifier, copied below with one change: the class ranking uses a stable
sort (`probs.sort(dim=1, descending=True, stable=True)`), so classes with equal scores (in practice: the zero-score
classes that fill the top-5 when fewer than five classes got votes) are ranked by class index, which is
what Tessera does. The script also reports whether torch's default sort would give other numbers.
Writes Tests/TesseraTests/Fixtures/knn.h5:
  train/features [400, 32] float32, train/labels [400] int64, test/features [200, 32], test/labels [200]
  k [5] int64, top1 [5] float64, top5 [5] float64 (percent, for k = 1, 3, 5, 10, 20), attribute T = 0.07
Run once: python3 tools/make_knn_fixture.py
"""
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "TesseraTests", "Fixtures", "knn.h5")
KS = [1, 3, 5, 10, 20]
T = 0.07
CLASSES = 10


@torch.no_grad()
def knn_classifier(train_features, train_labels, test_features, test_labels, k, T, num_classes, stable):
    top1, top5, total = 0.0, 0.0, 0
    train_features = train_features.t()
    num_test_images, num_chunks = test_labels.shape[0], 100
    imgs_per_chunk = num_test_images // num_chunks
    retrieval_one_hot = torch.zeros(k, num_classes)
    for idx in range(0, num_test_images, imgs_per_chunk):
        features = test_features[idx:min(idx + imgs_per_chunk, num_test_images), :]
        targets = test_labels[idx:min(idx + imgs_per_chunk, num_test_images)]
        batch_size = targets.shape[0]
        similarity = torch.mm(features, train_features)
        distances, indices = similarity.topk(k, largest=True, sorted=True)
        candidates = train_labels.view(1, -1).expand(batch_size, -1)
        retrieved_neighbors = torch.gather(candidates, 1, indices)
        retrieval_one_hot.resize_(batch_size * k, num_classes).zero_()
        retrieval_one_hot.scatter_(1, retrieved_neighbors.view(-1, 1), 1)
        distances_transform = distances.clone().div_(T).exp_()
        probs = torch.sum(torch.mul(retrieval_one_hot.view(batch_size, -1, num_classes),
                                    distances_transform.view(batch_size, -1, 1)), 1)
        if stable:
            _, predictions = probs.sort(dim=1, descending=True, stable=True)
        else:
            _, predictions = probs.sort(1, True)
        correct = predictions.eq(targets.data.view(-1, 1))
        top1 = top1 + correct.narrow(1, 0, 1).sum().item()
        top5 = top5 + correct.narrow(1, 0, min(5, k)).sum().item()
        total += targets.size(0)
    return top1 * 100.0 / total, top5 * 100.0 / total


def main():
    g = torch.Generator().manual_seed(11)
    centers = torch.randn(CLASSES, 32, generator=g)

    def sample(n):
        labels = torch.randint(0, CLASSES, (n,), generator=g)
        x = centers[labels] + 2.5 * torch.randn(n, 32, generator=g)
        return F.normalize(x, dim=1), labels

    train, train_labels = sample(400)
    test, test_labels = sample(200)
    # No exact similarity ties among a row's neighbours, so top-k order is unambiguous.
    sim = test @ train.t()
    for row in sim:
        top = row.topk(21).values
        assert (top[:-1] > top[1:]).all()
    top1, top5 = [], []
    for k in KS:
        a = knn_classifier(train, train_labels, test, test_labels, k, T, CLASSES, stable=True)
        b = knn_classifier(train, train_labels, test, test_labels, k, T, CLASSES, stable=False)
        if a != b:
            print(f"k={k}: default (unstable) sort gives {b}, stable sort {a}")
        print(f"k={k}: top1 {a[0]:.2f} top5 {a[1]:.2f}")
        top1.append(a[0])
        top5.append(a[1])
    with h5py.File(OUT, "w") as f:
        f["train/features"] = train.numpy().astype(np.float32)
        f["train/labels"] = train_labels.numpy().astype(np.int64)
        f["test/features"] = test.numpy().astype(np.float32)
        f["test/labels"] = test_labels.numpy().astype(np.int64)
        f["k"] = np.array(KS, dtype=np.int64)
        f["top1"] = np.array(top1, dtype=np.float64)
        f["top5"] = np.array(top5, dtype=np.float64)
        f.attrs["T"] = str(T)
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
