using System.IO.Compression;
using System.Text;
using MetaMae.Data.Formats;
using MetaMae.Data.Transforms;

namespace MetaMae.Data.Tests;

/// <summary>
/// What a header claims is bounded by the file and by <see cref="HeaderLimits"/> before anything is allocated: each
/// hostile file here is refused with a message naming the claim, having allocated almost nothing (measured on this
/// thread, where the readers run), never the gigabytes it asks for.
/// </summary>
public sealed class HostileHeaderTests : DataFilesTest
{
    private const long Little = 64L << 20; // what a refusal may allocate at most

    private static (Exception Error, long Allocated) Refused(Action read)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Record.Exception(read);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.NotNull(e);
        return (e!, allocated);
    }

    private static byte[] Wav(short channels, int rate, uint dataClaim, byte[] data)
    {
        var m = new MemoryStream();
        var w = new BinaryWriter(m);
        w.Write("RIFF"u8); w.Write(36 + data.Length); w.Write("WAVE"u8);
        w.Write("fmt "u8); w.Write(16); w.Write((short)1); w.Write(channels); w.Write(rate); w.Write(rate * 2 * channels);
        w.Write((short)(2 * channels)); w.Write((short)16);
        w.Write("data"u8); w.Write(dataClaim); w.Write(data);
        return m.ToArray();
    }

    [Fact]
    public void A_wav_whose_data_chunk_claims_2_GB_in_a_144_byte_file_is_refused_without_the_allocation()
    {
        var path = Write("liar.wav", Wav(1, 16000, 2_000_000_000, new byte[100]));
        Assert.Equal(144, new FileInfo(path).Length);
        var (e, allocated) = Refused(() => AudioFile.Read(path));
        Assert.IsType<FormatException>(e);
        Assert.Contains("data chunk claims 2,000,000,000 bytes, but only 100 follow", e.Message);
        Assert.True(allocated < Little, $"allocated {allocated:N0} bytes to refuse it");
    }

    [Fact]
    public void A_stereo_clip_with_its_signal_in_the_right_channel_is_mixed_not_read_as_silence()
    {
        const int n = 800;
        var data = new byte[n * 4];
        for (int i = 0; i < n; i++)
        {
            short right = (short)(16000 * Math.Sin(2 * Math.PI * 440 * i / 16000.0));
            BitConverter.GetBytes((short)0).CopyTo(data, 4 * i);
            BitConverter.GetBytes(right).CopyTo(data, 4 * i + 2);
        }
        var audio = AudioFile.Read(Write("stereo.wav", Wav(2, 16000, (uint)data.Length, data)));
        Assert.Equal(n, audio.Samples.Length);
        var peak = audio.Samples.Max(Math.Abs);
        Assert.InRange(peak, 0.2f, 0.3f); // half of the right channel's ~0.49: the mean of both
    }

    [Fact]
    public void An_idx_whose_dimensions_multiply_past_2_to_the_64_is_refused_naming_the_file()
    {
        byte[] header = [0, 0, 8, 3, 0x7f, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff];
        var path = Write("liar-idx3-ubyte", [.. header, .. new byte[64]]);
        var (e, allocated) = Refused(() => Idx.Read(path));
        Assert.IsType<FormatException>(e);
        Assert.Contains(path, e.Message);
        Assert.Contains("more than 2^63", e.Message);
        Assert.True(allocated < Little, $"allocated {allocated:N0} bytes to refuse it");
    }

    [Fact]
    public void A_gzipped_idx_that_claims_a_gigabyte_is_read_as_it_comes_and_refused_at_its_end()
    {
        byte[] header = [0, 0, 8, 2, 0, 0x01, 0, 0, 0, 0, 0x40, 0]; // 65536 x 16384 = 1 GiB claimed
        var path = Path.Combine(Root, "liar-idx2-ubyte.gz");
        using (var gz = new GZipStream(File.Create(path), CompressionLevel.Fastest)) gz.Write([.. header, .. new byte[1000]]);
        var (e, allocated) = Refused(() => Idx.Read(path));
        Assert.Contains("1073741824 bytes, file has 1000", e.Message);
        Assert.True(allocated < Little, $"allocated {allocated:N0} bytes to refuse it");
    }

    [Fact]
    public void A_one_dimensional_idx_given_as_images_is_refused_naming_the_file_and_the_layout_expected()
    {
        Idx.Write(Path.Combine(Root, "train-images-idx3-ubyte"), [4], [1, 2, 3, 4]);
        Idx.Write(Path.Combine(Root, "train-labels-idx1-ubyte"), [4], [0, 1, 0, 1]);
        var e = Record.Exception(() => DatasetCatalog.Open("fashion-mnist", new Readers.ReaderOptions(Root, Split.Pretrain)));
        Assert.NotNull(e);
        Assert.Contains(Path.Combine(Root, "train-images-idx3-ubyte"), e!.Message);
        Assert.Contains("images x height x width expected", e.Message);
    }

    [Fact]
    public void An_npy_whose_shape_claims_more_than_its_bytes_is_refused_before_reading()
    {
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }".PadRight(118) + "\n";
        byte[] bytes = [0x93, .. "NUMPY"u8, 1, 0, (byte)header.Length, 0, .. Encoding.Latin1.GetBytes(header), .. new byte[16]];
        var path = Write("liar.npy", bytes);
        var (e, allocated) = Refused(() => Npy.Read(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("claims 40,000,000,000 bytes, but only 16 follow", e.Message);
        Assert.True(allocated < Little, $"allocated {allocated:N0} bytes to refuse it");
    }

    [Fact]
    public void A_mat_file_element_that_claims_more_than_the_file_holds_is_refused()
    {
        var path = Path.Combine(Root, "liar.mat");
        MatV5.WriteRowVectors(path, new Dictionary<string, double[]> { ["X"] = [1, 2, 3] }, compress: false);
        var bytes = File.ReadAllBytes(path);
        BitConverter.GetBytes(int.MaxValue).CopyTo(bytes, 128 + 4); // the first element's size
        File.WriteAllBytes(path, bytes);
        var (e, allocated) = Refused(() => MatV5.Read(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("claims 2,147,483,647 bytes", e.Message);
        Assert.True(allocated < Little, $"allocated {allocated:N0} bytes to refuse it");
    }
}
