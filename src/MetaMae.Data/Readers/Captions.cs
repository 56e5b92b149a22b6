using System.Text.Json;
using MetaMae.Data.Transforms;
using Microsoft.ML.Tokenizers;

namespace MetaMae.Data.Readers;

/// <summary>
/// An image with its text (a caption or a question) and a label (-1 for captions, the answer id for VQA);
/// <see cref="Problem"/> says why it cannot be read (a caption of an image the annotations do not list).
/// </summary>
public sealed record CaptionRecord(string ImagePath, string Text, int Label, string? Problem = null) : Formats.IRecordProblem;

/// <summary>
/// Image+text pairs: MSCOCO captions and VQA questions on COCO images. Text becomes 32 BERT-uncased WordPiece ids
/// ([CLS] ... [SEP], [PAD] = 0) with a vocab.txt the user supplies (Microsoft.ML.Tokenizers); images (3, 224, 224).
/// </summary>
public static class Captions
{
    public static BertTokenizer LoadTokenizer(string root)
    {
        var vocab = Layout.File(Path.Combine(root, "vocab.txt"), "vocab.txt: the BERT uncased WordPiece vocabulary (bert-base-uncased)");
        return BertTokenizer.Create(vocab, new BertOptions { LowerCaseBeforeTokenization = true });
    }

    public static long[] Encode(BertTokenizer tokenizer, string text, int length)
    {
        var ids = tokenizer.EncodeToIds(text, length, addSpecialTokens: true, out _, out _);
        var result = new long[length];
        for (int i = 0; i < ids.Count && i < length; i++) result[i] = ids[i];
        return result;
    }

    private static IDataset FromRecords(DatasetSpec spec, IReadOnlyList<CaptionRecord> records, BertTokenizer tokenizer) =>
        new ListDataset<CaptionRecord>(spec, records, r => r.ImagePath, (r, _) => new Sample(
            ImageDecoder.DecodeRgb(File.ReadAllBytes(r.ImagePath), spec.Shape[1], spec.Shape[2]),
            Encode(tokenizer, r.Text, spec.TextLength), [r.Label]));

    /// <summary>COCO 2017: annotations/captions_{train,val}2017.json and {train,val}2017/*.jpg; one record per caption.</summary>
    public static IDataset Coco(DatasetSpec spec, ReaderOptions o)
    {
        var year = o.Training ? "train2017" : "val2017";
        var layout = $"annotations/captions_{year}.json, {year}/*.jpg, vocab.txt";
        var json = Layout.File(Path.Combine(o.Root, "annotations", $"captions_{year}.json"), layout);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(json));
        var files = doc.RootElement.GetProperty("images").EnumerateArray()
            .ToDictionary(e => e.GetProperty("id").GetInt64(), e => e.GetProperty("file_name").GetString()!);
        var records = doc.RootElement.GetProperty("annotations").EnumerateArray()
            .Select(a => (Id: a.GetProperty("id").GetInt64(), Image: a.GetProperty("image_id").GetInt64(), Text: a.GetProperty("caption").GetString() ?? ""))
            .OrderBy(a => a.Id)
            .Select(a => files.TryGetValue(a.Image, out var file)
                ? new CaptionRecord(Path.Combine(o.Root, year, file), a.Text, -1)
                : new CaptionRecord(json, a.Text, -1, $"caption {a.Id} names image_id {a.Image}, which the file's \"images\" list does not have"))
            .ToList();
        return FromRecords(spec, records, LoadTokenizer(o.Root));
    }

    /// <summary>
    /// VQA v2 on COCO: v2_OpenEnded_mscoco_{train,val}2014_questions.json, v2_mscoco_{train,val}2014_annotations.json
    /// and {train,val}2014/COCO_..._NNNNNNNNNNNN.jpg; the label is the answer's index among the spec's most frequent
    /// training answers (questions with other answers are skipped when listing).
    /// </summary>
    public static IDataset Vqa(DatasetSpec spec, ReaderOptions o)
    {
        var year = o.Training ? "train2014" : "val2014";
        var layout = $"v2_OpenEnded_mscoco_{year}_questions.json, v2_mscoco_{year}_annotations.json, {year}/*.jpg, vocab.txt";
        var answers = TopAnswers(Layout.File(Path.Combine(o.Root, "v2_mscoco_train2014_annotations.json"), layout), spec.Classes);
        using var q = JsonDocument.Parse(File.ReadAllBytes(Layout.File(Path.Combine(o.Root, $"v2_OpenEnded_mscoco_{year}_questions.json"), layout)));
        using var a = JsonDocument.Parse(File.ReadAllBytes(Layout.File(Path.Combine(o.Root, $"v2_mscoco_{year}_annotations.json"), layout)));
        var answerOf = a.RootElement.GetProperty("annotations").EnumerateArray()
            .ToDictionary(e => e.GetProperty("question_id").GetInt64(), e => e.GetProperty("multiple_choice_answer").GetString() ?? "");
        var records = q.RootElement.GetProperty("questions").EnumerateArray()
            .Select(e => (Id: e.GetProperty("question_id").GetInt64(), Image: e.GetProperty("image_id").GetInt64(), Text: e.GetProperty("question").GetString() ?? ""))
            .Where(e => answerOf.TryGetValue(e.Id, out var ans) && answers.ContainsKey(ans))
            .OrderBy(e => e.Id)
            .Select(e => new CaptionRecord(Path.Combine(o.Root, year, $"COCO_{year}_{e.Image:D12}.jpg"), e.Text, answers[answerOf[e.Id]]))
            .ToList();
        return FromRecords(spec, records, LoadTokenizer(o.Root));
    }

    private static Dictionary<string, int> TopAnswers(string annotations, int count)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(annotations));
        return doc.RootElement.GetProperty("annotations").EnumerateArray()
            .Select(e => e.GetProperty("multiple_choice_answer").GetString() ?? "")
            .GroupBy(s => s).OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal).Take(count)
            .Select((g, i) => (g.Key, i)).ToDictionary(p => p.Key, p => p.i);
    }
}
