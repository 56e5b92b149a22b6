using MetaMae.Data.Formats;
using MetaMae.Data.Readers;

namespace MetaMae.Data.Tests;

public class ImageReaderTests : DataFilesTest
{
    private static IDataset Open(string name, string root, Split split) => DatasetCatalog.Open(name, new ReaderOptions(root, split));
    private static Sample Read(IDataset d, int i) => d.Read(i, new DecodeContext(0, 0, i, false));

    [Fact]
    public void Cifar10_binary_batches_are_read_with_labels_and_planar_rgb()
    {
        var record = new byte[3073];
        record[0] = 7;
        for (int i = 0; i < 1024; i++) { record[1 + i] = 255; record[1 + 2048 + i] = 51; } // red plane 255, blue plane 51
        for (int b = 1; b <= 5; b++) Write($"cifar-10-batches-bin/data_batch_{b}.bin", [.. record, .. record]);
        Write("cifar-10-batches-bin/test_batch.bin", record);
        var train = Open("cifar10", Root, Split.Train);
        Assert.Equal(10, train.Count);
        var s = Read(train, 3);
        Assert.Equal(7f, s.Labels[0]);
        Assert.Equal(1f, s.Values![0]);
        Assert.Equal(0f, s.Values[1024]);
        Assert.Equal(0.2f, s.Values[2048], 5);
        Assert.Equal(1, Open("cifar10", Root, Split.Test).Count);
    }

    [Fact]
    public void Cifar10_truncated_batch_names_the_file()
    {
        for (int b = 1; b <= 5; b++) Write($"cifar-10-batches-bin/data_batch_{b}.bin", new byte[3073]);
        Write("cifar-10-batches-bin/data_batch_2.bin", new byte[3000]);
        var e = Assert.Throws<FormatException>(() => Open("cifar10", Root, Split.Train));
        Assert.Contains("data_batch_2.bin", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void Missing_directory_names_path_and_expected_layout()
    {
        var e = Assert.Throws<DataLayoutException>(() => Open("cub", Root, Split.Train));
        Assert.Contains("CUB_200_2011", e.Message);
        Assert.Contains("image_class_labels.txt", e.Message);
    }

    [Fact]
    public void Class_folders_with_train_and_val_are_resized_to_32()
    {
        Write("train/cat/a.png", Png(40, 50, 1, 0, 0));
        Write("train/dog/b.png", Png(20, 20, 0, 0, 1));
        Write("val/cat/c.png", Png(32, 32, 0, 1, 0));
        Write("val/dog/d.png", Png(32, 32, 0, 1, 0));
        var train = Open("imagenet32", Root, Split.Pretrain);
        Assert.Equal(2, train.Count);
        var dog = Read(train, 1);
        Assert.Equal(1f, dog.Labels[0]);
        Assert.Equal(3 * 32 * 32, dog.Values!.Length);
        Assert.Equal(1f, dog.Values[2 * 1024 + 500], 2);
        Assert.Equal(0f, dog.Values[500], 2);
        Assert.Equal(2, Open("imagenet32", Root, Split.Test).Count);
    }

    [Fact]
    public void Gtsrb_ppm_class_folders_split_80_20_per_class()
    {
        for (int c = 0; c < 2; c++)
            for (int i = 0; i < 10; i++) Write($"GTSRB/Final_Training/Images/{c:D5}/{i:D5}_00000.ppm", Ppm(30, 29, (byte)(c * 255), 128, 0));
        var train = Open("traffic-sign", Root, Split.Train);
        var test = Open("traffic-sign", Root, Split.Test);
        Assert.Equal(16, train.Count);
        Assert.Equal(4, test.Count);
        var s = Read(test, 3);
        Assert.Equal(1f, s.Labels[0]);
        Assert.Equal(1f, s.Values![0], 2);
        Assert.Equal(128 / 255f, s.Values[1024], 2);
        var trainFiles = Enumerable.Range(0, train.Count).Select(train.Describe).ToHashSet();
        Assert.DoesNotContain(Enumerable.Range(0, test.Count).Select(test.Describe), trainFiles.Contains);
    }

    [Fact]
    public void Cub_uses_its_split_and_label_files()
    {
        Write("CUB_200_2011/images.txt", "1 001.Albatross/a.jpg\n2 002.Auklet/b.jpg\n3 002.Auklet/c.jpg\n");
        Write("CUB_200_2011/image_class_labels.txt", "1 1\n2 2\n3 2\n");
        Write("CUB_200_2011/train_test_split.txt", "1 1\n2 0\n3 1\n");
        Write("CUB_200_2011/images/001.Albatross/a.jpg", Png(10, 10, 1, 1, 1));
        Write("CUB_200_2011/images/002.Auklet/b.jpg", Png(10, 10, 0, 0, 0));
        Write("CUB_200_2011/images/002.Auklet/c.jpg", Png(10, 10, 0, 0, 0));
        var train = Open("cub", Root, Split.Train);
        Assert.Equal(2, train.Count);
        Assert.Equal(new[] { 0f, 1f }, new[] { Read(train, 0).Labels[0], Read(train, 1).Labels[0] });
        Assert.Equal(1, Open("cub", Root, Split.Test).Count);
    }

    [Fact]
    public void Flowers_labels_come_from_imagelabels_mat()
    {
        var labels = new double[] { 1, 1, 1, 1, 1, 2, 2, 2, 2, 2 };
        Directory.CreateDirectory(Path.Combine(Root, "flowers102", "jpg"));
        MatV5.WriteRowVectors(Path.Combine(Root, "flowers102", "imagelabels.mat"), new Dictionary<string, double[]> { ["labels"] = labels });
        for (int i = 1; i <= 10; i++) Write($"flowers102/jpg/image_{i:D5}.jpg", Png(12, 12, i / 10f, 0, 0));
        var train = Open("vggflower", Root, Split.Train);
        var test = Open("vggflower", Root, Split.Test);
        Assert.Equal(8, train.Count);
        Assert.Equal(2, test.Count);
        Assert.Equal(new[] { 0f, 1f }, Enumerable.Range(0, 2).Select(i => Read(test, i).Labels[0]).ToArray());
    }

    [Fact]
    public void Dtd_reads_its_split_lists()
    {
        Write("dtd/labels/train1.txt", "banded/banded_0001.jpg\n");
        Write("dtd/labels/val1.txt", "zigzagged/z_0001.jpg\n");
        Write("dtd/labels/test1.txt", "banded/banded_0002.jpg\n");
        foreach (var f in new[] { "banded/banded_0001.jpg", "zigzagged/z_0001.jpg", "banded/banded_0002.jpg" })
            Write("dtd/images/" + f, Png(8, 8, 0.5f, 0.5f, 0.5f));
        var train = Open("dtd", Root, Split.Train);
        Assert.Equal(2, train.Count);
        Assert.Equal(1f, Read(train, 1).Labels[0]);
    }

    [Fact]
    public void Aircraft_crops_to_the_bounding_box()
    {
        // Left half red, right half blue; the box keeps the left half only.
        var chw = new float[3 * 20 * 40];
        for (int y = 0; y < 20; y++)
            for (int x = 0; x < 40; x++)
                if (x < 20) chw[y * 40 + x] = 1; else chw[2 * 800 + y * 40 + x] = 1;
        Write("fgvc-aircraft-2013b/data/images/0001.jpg", Transforms.ImageDecoder.EncodePng(chw, 20, 40));
        Write("fgvc-aircraft-2013b/data/images_variant_trainval.txt", "0001 Boeing 707-320\n");
        Write("fgvc-aircraft-2013b/data/images_variant_test.txt", "");
        Write("fgvc-aircraft-2013b/data/images_box.txt", "0001 0 0 19 19\n");
        var s = Read(Open("aircraft", Root, Split.Train), 0);
        Assert.True(s.Values!.Take(1024).Min() > 0.95f, "cropped image should be red");
        Assert.True(s.Values!.Skip(2048).Max() < 0.05f, "no blue after the crop");
    }

    [Fact]
    public void A_corrupt_image_is_a_bad_record_naming_the_file()
    {
        Write("train/a/ok.png", Png(8, 8, 1, 1, 1));
        Write("train/a/broken.png", [1, 2, 3, 4]);
        Write("val/a/x.png", Png(8, 8, 1, 1, 1));
        var d = Open("imagenet32", Root, Split.Pretrain);
        var e = Assert.Throws<BadRecordException>(() => Read(d, 0));
        Assert.EndsWith("broken.png", e.Where);
    }

    [Fact]
    public void Idx_images_read_gzipped_and_plain()
    {
        var images = new byte[3 * 28 * 28];
        images[28 * 28] = 255;
        Idx.Write(Path.Combine(Root, "train-images-idx3-ubyte.gz"), [3, 28, 28], images);
        Idx.Write(Path.Combine(Root, "train-labels-idx1-ubyte"), [3], [4, 5, 6]);
        var d = Open("fashion-mnist", Root, Split.Train);
        Assert.Equal(3, d.Count);
        var s = Read(d, 1);
        Assert.Equal(5f, s.Labels[0]);
        Assert.Equal(1f, s.Values![0]);
    }

    [Fact]
    public void The_real_fashion_mnist_and_the_embedded_subset_load()
    {
        var real = Open("fashion-mnist", SharedData.Dir("fashion-mnist"), Split.Test);
        Assert.Equal(10_000, real.Count);
        var embedded = Open("fashion-mnist", EmbeddedData.Resolve("embedded"), Split.Train);
        Assert.Equal(8000, embedded.Count);
        Assert.Equal(Read(real, 0).Values!.Length, Read(embedded, 0).Values!.Length);
    }
}
