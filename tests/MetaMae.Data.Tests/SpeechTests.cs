using MetaMae.Data.Readers;
using MetaMae.Data.Transforms;

namespace MetaMae.Data.Tests;

public class SpeechTests : DataFilesTest
{
    private static Sample Read(IDataset d, int i) => d.Read(i, new DecodeContext(0, 0, i, false));

    [Fact]
    public void Slaney_mel_scale_is_linear_below_1kHz_and_logarithmic_above()
    {
        Assert.Equal(15.0, LogMel.HzToMel(1000), 9);
        Assert.Equal(7.5, LogMel.HzToMel(500), 9);
        Assert.Equal(42.0, LogMel.HzToMel(6400), 9);  // 15 + 27 * log(6.4) / log(6.4)
        foreach (var hz in new[] { 0.0, 300, 999, 1000, 4321, 11025 })
            Assert.Equal(hz, LogMel.MelToHz(LogMel.HzToMel(hz)), 6);
    }

    [Fact]
    public void Filterbank_triangles_peak_at_their_centres_with_unit_area()
    {
        const int sr = 16000, nfft = 2048, mels = 40;
        var fb = LogMel.SlaneyFilterbank(sr, nfft, mels, 0, sr / 2.0);
        double melMax = LogMel.HzToMel(sr / 2.0), df = (double)sr / nfft;
        for (int m = 5; m < mels; m++) // wide enough filters for the area to be sampled well
        {
            double centre = LogMel.MelToHz(melMax * (m + 1) / (mels + 1));
            int peak = Array.IndexOf(fb[m], fb[m].Max());
            Assert.InRange(peak * df, centre - df, centre + df);
            Assert.InRange(fb[m].Sum() * df, 0.97, 1.03);
        }
    }

    [Fact]
    public void A_pure_tone_lights_the_mel_band_of_its_frequency()
    {
        const int sr = 16000;
        var mel = new LogMel(sr).Compute(LogMel.Fit(Tone(1000, sr, sr), keepEnd: false), 0, 1);
        Assert.Equal(LogMel.Mels * LogMel.Frames, mel.Length);
        Assert.Equal(224, LogMel.Frames);
        // Average over the frames that contain the tone (the first second).
        var bandEnergy = Enumerable.Range(0, LogMel.Mels).Select(m => Enumerable.Range(2, 18).Average(t => mel[m * LogMel.Frames + t])).ToArray();
        int loudest = Array.IndexOf(bandEnergy, bandEnergy.Max());
        double melMax = LogMel.HzToMel(sr / 2.0);
        int expected = (int)Math.Round(LogMel.HzToMel(1000) / melMax * (LogMel.Mels + 1)) - 1;
        Assert.InRange(loudest, expected - 1, expected + 1);
        // top_db: nothing more than 80 dB below the loudest value.
        Assert.True(mel.Max() - mel.Min() <= 80.0001);
    }

    [Fact]
    public void Long_clips_are_cropped_and_short_ones_padded_with_silence()
    {
        var longClip = Enumerable.Range(0, LogMel.MaxLength + 10).Select(i => (float)i).ToArray();
        Assert.Equal(0f, LogMel.Fit(longClip, keepEnd: false)[0]);
        Assert.Equal(10f, LogMel.Fit(longClip, keepEnd: true)[0]);
        var shortFit = LogMel.Fit(new float[] { 1, 2 }, false);
        Assert.Equal(LogMel.MaxLength, shortFit.Length);
        Assert.Equal(0f, shortFit[2]);
    }

    private void Wav(string relative, double hz = 440, int rate = 8000, int samples = 4000)
    {
        var path = Path.Combine(Root, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        AudioFile.WriteWav16(path, Tone(hz, rate, samples), rate);
    }

    [Fact]
    public void Wav_16_bit_pcm_round_trips()
    {
        Wav("a.wav", 440, 11025, 2000);
        var audio = AudioFile.Read(Path.Combine(Root, "a.wav"));
        Assert.Equal(11025, audio.SampleRate);
        Assert.Equal(2000, audio.Samples.Length);
        Assert.Equal(Tone(440, 11025, 2000)[100], audio.Samples[100], 3);
    }

    [Fact]
    public void Ogg_vorbis_files_decode_to_the_same_tone()
    {
        // Ogg Vorbis written by Debian's oggenc (vorbis-tools) from a WAV of a known tone.
        Wav("tone.wav", 440, 16000, 16000);
        var psi = new System.Diagnostics.ProcessStartInfo("oggenc") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in new[] { "-Q", "-q", "6", "-o", Path.Combine(Root, "tone.ogg"), Path.Combine(Root, "tone.wav") }) psi.ArgumentList.Add(a);
        using (var p = System.Diagnostics.Process.Start(psi)!) p.WaitForExit();
        var audio = AudioFile.Read(Path.Combine(Root, "tone.ogg"));
        Assert.Equal(16000, audio.SampleRate);
        Assert.InRange(audio.Samples.Length, 15_900, 16_100);
        // Same dominant frequency: compare log-mels of the WAV and the Ogg.
        var lm = new LogMel(16000);
        var fromWav = lm.Compute(LogMel.Fit(AudioFile.Read(Path.Combine(Root, "tone.wav")).Samples, false), 0, 1);
        var fromOgg = lm.Compute(LogMel.Fit(audio.Samples, false), 0, 1);
        int Loudest(float[] m) => Enumerable.Range(0, LogMel.Mels).MaxBy(b => m[b * LogMel.Frames + 10]);
        Assert.Equal(Loudest(fromWav), Loudest(fromOgg));
        File.WriteAllBytes(Path.Combine(Root, "broken.ogg"), new byte[100]);
        Assert.Throws<FormatException>(() => AudioFile.Read(Path.Combine(Root, "broken.ogg")));
    }

    [Fact]
    public void AudioMnist_layout_uses_the_speaker_split_and_digit_labels()
    {
        Wav("AudioMNIST/data/01/3_01_0.wav");
        Wav("AudioMNIST/data/01/7_01_1.wav");
        Wav("AudioMNIST/data/05/2_05_0.wav"); // speaker 5 is a test speaker
        var train = DatasetCatalog.Open("audio-mnist", new ReaderOptions(Root, Split.Train));
        Assert.Equal(2, train.Count);
        var s = Read(train, 1);
        Assert.Equal(7f, s.Labels[0]);
        Assert.Equal(224 * 224, s.Values!.Length);
        Assert.Equal(2f, Read(DatasetCatalog.Open("audio-mnist", new ReaderOptions(Root, Split.Test)), 0).Labels[0]);
    }

    [Fact]
    public void A_truncated_wav_is_a_bad_record()
    {
        Wav("AudioMNIST/data/01/3_01_0.wav");
        var path = Path.Combine(Root, "AudioMNIST/data/01/3_01_0.wav");
        File.WriteAllBytes(path, File.ReadAllBytes(path)[..30]);
        var d = DatasetCatalog.Open("audio-mnist", new ReaderOptions(Root, Split.Train));
        var e = Assert.Throws<BadRecordException>(() => Read(d, 0));
        Assert.Contains("3_01_0.wav", e.Where);
    }

    [Fact]
    public void Google_speech_commands_respects_validation_and_testing_lists()
    {
        Wav("google_speech/yes/a.wav");
        Wav("google_speech/yes/b.wav");
        Wav("google_speech/no/c.wav");
        Write("google_speech/validation_list.txt", "yes/b.wav\n");
        Write("google_speech/testing_list.txt", "no/c.wav\n");
        var train = DatasetCatalog.Open("google-speech", new ReaderOptions(Root, Split.Train));
        Assert.Equal(2, train.Count);
        var test = DatasetCatalog.Open("google-speech", new ReaderOptions(Root, Split.Test));
        Assert.Equal(1, test.Count);
        Assert.Equal(Array.IndexOf(Speech.GoogleLabels, "no"), (int)Read(test, 0).Labels[0]);
    }

    [Fact]
    public void Fluent_speech_commands_reads_its_csvs()
    {
        Wav("fluent_speech_commands_dataset/wavs/speakers/s1/a.wav");
        const string header = "index,path,speakerId,transcription,action,object,location\n";
        Write("fluent_speech_commands_dataset/data/train_data.csv", header + "0,wavs/speakers/s1/a.wav,s1,\"Turn on the lights, please\",activate,lights,kitchen\n");
        Write("fluent_speech_commands_dataset/data/valid_data.csv", header);
        Write("fluent_speech_commands_dataset/data/test_data.csv", header);
        var s = Read(DatasetCatalog.Open("fluent-speech-loc", new ReaderOptions(Root, Split.Train)), 0);
        Assert.Equal(1f, s.Labels[0]); // kitchen
        var o = Read(DatasetCatalog.Open("fluent-speech-obj", new ReaderOptions(Root, Split.Train)), 0);
        Assert.Equal(2f, o.Labels[0]); // lights
    }

    [Fact]
    public void VoxCeleb1_identification_split_file()
    {
        Wav("voxceleb1/wav/id10001/v1/00001.wav");
        Wav("voxceleb1/wav/id10002/v1/00001.wav");
        Wav("voxceleb1/wav/id10002/v1/00002.wav");
        Write("voxceleb1/iden_split.txt", "1 id10001/v1/00001.wav\n2 id10002/v1/00001.wav\n3 id10002/v1/00002.wav\n");
        var train = DatasetCatalog.Open("voxceleb1", new ReaderOptions(Root, Split.Train));
        Assert.Equal(2, train.Count);
        Assert.Equal(1f, Read(train, 1).Labels[0]);
        Assert.Equal(1, DatasetCatalog.Open("voxceleb1", new ReaderOptions(Root, Split.Test)).Count);
    }

    [Fact]
    public void LibriSpeech_layout_labels_speakers_and_crops_randomly_only_in_pretraining()
    {
        int rate = 16000, n = LogMel.MaxLength + 8000;
        var clip = Enumerable.Range(0, n).Select(i => i < 8000 ? 0f : (float)Math.Sin(i * 0.3)).ToArray();
        foreach (var (spk, sub) in new[] { ("19", "train-clean-100"), ("26", "train-clean-100"), ("19", "dev-clean"), ("26", "dev-clean") })
        {
            var dir = Path.Combine(Root, "LibriSpeech", sub, spk, "198");
            Directory.CreateDirectory(dir);
            for (int u = 0; u < 5; u++) AudioFile.WriteWav16(Path.Combine(dir, $"{spk}-198-{u:D4}.wav"), clip, rate);
        }
        var pre = DatasetCatalog.Open("librispeech", new ReaderOptions(Root, Split.Pretrain));
        Assert.Equal(10, pre.Count);
        var crops = Enumerable.Range(0, 8).Select(e => pre.Read(0, new DecodeContext(1, e, 0, true)).Values!.Sum()).Distinct().Count();
        Assert.Equal(2, crops); // both sides were chosen across epochs
        var transfer = DatasetCatalog.Open("librispeech", new ReaderOptions(Root, Split.Train));
        Assert.Equal(8, transfer.Count);
        var fixedCrop = Enumerable.Range(0, 4).Select(e => transfer.Read(0, new DecodeContext(1, e, 0, false)).Values!.Sum()).Distinct().Count();
        Assert.Equal(1, fixedCrop);
    }

    [Fact]
    public void A_catalog_clip_stored_at_another_rate_is_resampled_to_its_set_s_published_rate()
    {
        // The same two-tone clip, once at LibriSpeech's 16 kHz and once at 8 kHz (another speaker's folder).
        static float[] Tones(int rate, double seconds) =>
            Enumerable.Range(0, (int)(rate * seconds)).Select(i => (float)(0.3 * Math.Sin(2 * Math.PI * 440 * i / rate) + 0.2 * Math.Sin(2 * Math.PI * 1500 * i / rate))).ToArray();
        foreach (var (spk, rate) in new[] { ("19", 16_000), ("26", 8_000) })
            foreach (var sub in new[] { "train-clean-100", "dev-clean" })
            {
                var dir = Path.Combine(Root, "LibriSpeech", sub, spk, "198");
                Directory.CreateDirectory(dir);
                for (int u = 0; u < 5; u++) AudioFile.WriteWav16(Path.Combine(dir, $"{spk}-198-{u:D4}.wav"), Tones(rate, 4.0), rate);
            }
        var d = DatasetCatalog.Open("librispeech", new ReaderOptions(Root, Split.Train));
        var native = Enumerable.Range(0, d.Count).First(i => Path.GetFileName(d.Describe(i)).StartsWith("19-", StringComparison.Ordinal));
        var other = Enumerable.Range(0, d.Count).First(i => Path.GetFileName(d.Describe(i)).StartsWith("26-", StringComparison.Ordinal));
        var a = Read(d, native).Values!;
        var b = Read(d, other).Values!;
        // Read at its own rate, the 8 kHz clip's log-mel would cover twice the time and half the spectrum (its bands
        // above 4 kHz empty); resampled, it matches the 16 kHz one but for what 8 kHz cannot hold.
        double meanDiff = a.Zip(b, (x, y) => Math.Abs(x - y)).Average();
        double spread = Math.Sqrt(a.Select(x => (x - a.Average()) * (x - a.Average())).Average());
        Assert.True(meanDiff < 0.25 * spread, $"mean |difference| {meanDiff:F3} against a spread of {spread:F3}");
    }

    [Fact]
    public void Spoken_digits_are_synthesised_in_the_audio_mnist_layout_and_load()
    {
        var report = Synthesis.SpokenDigits.Generate(Root, speakers: 3, repeats: 1, seed: 1);
        Assert.Equal(30, report.Clips + report.Dropped);
        Assert.True(report.Clips >= 27, $"only {report.Clips} of 30 clips were written");
        Assert.True(File.Exists(Path.Combine(Root, "AudioMNIST", "SYNTHETIC.md")));
        var d = DatasetCatalog.Open("spoken-digits", new ReaderOptions(Root, Split.Train));
        Assert.Equal(report.Clips, d.Count);
        var labels = Enumerable.Range(0, d.Count).Select(i => Path.GetFileName(d.Describe(i))[0] - '0').ToHashSet();
        Assert.Equal(10, labels.Count);
        Assert.Equal(224 * 224, Read(d, 0).Values!.Length);
    }
}
