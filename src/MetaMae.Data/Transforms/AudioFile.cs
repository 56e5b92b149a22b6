using NVorbis;
using NWaves.Audio;

namespace MetaMae.Data.Transforms;

/// <summary>Mono samples in [-1, 1] and their rate.</summary>
public sealed record Audio(float[] Samples, int SampleRate);

/// <summary>
/// Reads WAV (PCM 8/16/24/32-bit or float, through NWaves) and Ogg Vorbis (NVorbis), its channels mixed to mono (a
/// stereo clip with its signal on one side is not read as silence). What a header claims is bounded by the file and by
/// <see cref="MaxSamples"/> before anything is allocated.
/// </summary>
public static class AudioFile
{
    public static Audio Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path} not found", path);
        var ext = Path.GetExtension(path).ToLowerInvariant();
        return ext switch
        {
            ".wav" => ReadWav(path),
            ".ogg" or ".oga" => ReadOgg(path),
            ".flac" => throw new FormatException("FLAC is not decoded here; convert once with `sox in.flac out.wav` (README, Speech)"),
            _ => throw new FormatException($"unsupported audio file type '{ext}' (WAV or Ogg Vorbis expected)"),
        };
    }

    private static readonly NWaves.Operations.Resampler Resampler = new();

    /// <summary>The clip's samples at <paramref name="rate"/>: as read when it already is, else resampled (NWaves' band-limited resampler).</summary>
    public static float[] At(Audio audio, int rate) =>
        audio.SampleRate == rate ? audio.Samples : Resampler.Resample(new NWaves.Signals.DiscreteSignal(audio.SampleRate, audio.Samples), rate).Samples;

    /// <summary>The most samples one clip may decode to (all channels): 1 GiB of floats.</summary>
    public const long MaxSamples = Formats.HeaderLimits.MaxDecodedBytes / sizeof(float);

    private static Audio ReadWav(string path)
    {
        using var stream = File.OpenRead(path);
        CheckChunks(stream, path);
        WaveFile wave;
        try
        {
            wave = new WaveFile(stream);
        }
        catch (Exception e) when (e is not IOException)
        {
            throw new FormatException($"not a readable WAV file ({e.Message})", e);
        }
        var signal = wave.Signals[0];
        if (signal.Length == 0) throw new FormatException("WAV file has no samples (truncated?)");
        return new Audio(Mix(wave.Signals.Select(s => s.Samples).ToList()), signal.SamplingRate);
    }

    /// <summary>The channels' mean, sample by sample.</summary>
    private static float[] Mix(IReadOnlyList<float[]> channels)
    {
        if (channels.Count == 1) return channels[0];
        var mono = new float[channels.Min(c => c.Length)];
        foreach (var c in channels)
            for (int i = 0; i < mono.Length; i++) mono[i] += c[i];
        for (int i = 0; i < mono.Length; i++) mono[i] /= channels.Count;
        return mono;
    }

    /// <summary>
    /// Walks the RIFF chunks before NWaves allocates by them: each chunk's claimed size must lie within the file, and the
    /// data chunk's within <see cref="MaxSamples"/>; a 144-byte file claiming 2 GB of samples is refused, not decoded.
    /// </summary>
    private static void CheckChunks(FileStream stream, string path)
    {
        using var reader = new BinaryReader(stream, System.Text.Encoding.ASCII, leaveOpen: true);
        if (stream.Length < 12) throw new FormatException($"not a WAV file: {stream.Length} bytes, too short for a RIFF header");
        var riff = new string(reader.ReadChars(4));
        reader.ReadUInt32();
        var wave = new string(reader.ReadChars(4));
        if (riff != "RIFF" || wave != "WAVE") throw new FormatException($"not a WAV file (it starts with '{riff}', '{wave}'; RIFF, WAVE expected)");
        while (stream.Position + 8 <= stream.Length)
        {
            var id = new string(reader.ReadChars(4));
            long size = reader.ReadUInt32();
            long remaining = stream.Length - stream.Position;
            if (id == "data")
            {
                Formats.HeaderLimits.Check($"its data chunk", size, remaining);
                break;
            }
            if (size > remaining) throw new FormatException($"its '{id}' chunk claims {size:N0} bytes, but only {remaining:N0} follow");
            stream.Position += size + (size & 1);
        }
        stream.Position = 0;
    }

    private static Audio ReadOgg(string path)
    {
        try
        {
            using var vorbis = new VorbisReader(path);
            // Decoded as it comes, not allocated by the length the stream claims (its last granule position).
            int channels = vorbis.Channels;
            if (channels < 1) throw new FormatException($"Ogg file claims {channels} channels");
            var mono = new List<float>();
            var chunk = new float[4096 * channels];
            long total = 0;
            for (int read; (read = vorbis.ReadSamples(chunk, 0, chunk.Length)) > 0;)
            {
                if ((total += read) > MaxSamples) throw new FormatException($"Ogg file decodes to more than {MaxSamples:N0} samples, the most one clip may take");
                for (int i = 0; i + channels <= read; i += channels)
                {
                    float sum = 0;
                    for (int c = 0; c < channels; c++) sum += chunk[i + c];
                    mono.Add(sum / channels);
                }
            }
            if (mono.Count == 0) throw new FormatException("Ogg file has no samples");
            return new Audio([.. mono], vorbis.SampleRate);
        }
        catch (Exception e) when (e is ArgumentException or InvalidDataException or EndOfStreamException or IndexOutOfRangeException)
        {
            throw new FormatException($"not a readable Ogg Vorbis file ({e.Message})", e);
        }
    }

    /// <summary>Writes 16-bit PCM mono WAV (tests, synthetic data).</summary>
    public static void WriteWav16(string path, float[] samples, int sampleRate)
    {
        using var w = new BinaryWriter(File.Create(path));
        int dataBytes = samples.Length * 2;
        w.Write("RIFF"u8); w.Write(36 + dataBytes); w.Write("WAVE"u8);
        w.Write("fmt "u8); w.Write(16); w.Write((short)1); w.Write((short)1); w.Write(sampleRate); w.Write(sampleRate * 2);
        w.Write((short)2); w.Write((short)16);
        w.Write("data"u8); w.Write(dataBytes);
        foreach (var s in samples) w.Write((short)Math.Clamp(Math.Round(s * 32767), short.MinValue, short.MaxValue));
    }
}
