using NVorbis;
using NWaves.Audio;

namespace MetaMae.Data.Transforms;

/// <summary>Mono samples in [-1, 1] and their rate.</summary>
public sealed record Audio(float[] Samples, int SampleRate);

/// <summary>Reads WAV (PCM 8/16/24/32-bit or float, through NWaves) and Ogg Vorbis (NVorbis); first channel, as DABS uses.</summary>
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

    private static Audio ReadWav(string path)
    {
        using var stream = File.OpenRead(path);
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
        return new Audio(signal.Samples, signal.SamplingRate);
    }

    private static Audio ReadOgg(string path)
    {
        try
        {
            using var vorbis = new VorbisReader(path);
            var all = new float[vorbis.TotalSamples * vorbis.Channels];
            int read = vorbis.ReadSamples(all, 0, all.Length);
            var mono = new float[read / vorbis.Channels];
            for (int i = 0; i < mono.Length; i++) mono[i] = all[i * vorbis.Channels];
            if (mono.Length == 0) throw new FormatException("Ogg file has no samples");
            return new Audio(mono, vorbis.SampleRate);
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
