using System.CommandLine;
using MetaMae.Data;
using MetaMae.Data.Synthesis;
using Spectre.Console;

namespace MetaMae.Cli.Commands;

/// <summary>data list | data spoken-digits.</summary>
public static class DataCommand
{
    public static Command Create()
    {
        var data = new Command("data", "The supported data sets, and synthetic data generation.");
        var list = new Command("list", "Every supported data set: modality, shape, patch, batch, classes, metric, expected layout.");
        list.SetAction(_ =>
        {
            Output.Table(["name", "modality", "shape", "patch", "vocab", "batch", "classes", "metric", "role", "layout under ROOT"],
                DatasetCatalog.All.Select(e => e.Spec).Select(s => (IReadOnlyList<string>)
                [
                    s.Name, s.Modality, string.Join("x", s.Shape), string.Join("x", s.Patch), s.Vocab.ToString(),
                    s.BatchSize.ToString(), s.Classes > 0 ? s.Classes.ToString() : "-", s.Metric.ToString(), s.Role.ToString(), s.Layout,
                ]));
            Console.WriteLine();
            Console.WriteLine("Your own data: \"dataset\": {\"name\": NAME, \"format\": FORMAT, \"path\": FILE_OR_FOLDER, ...keys} (README, \"Your own data\")");
            Output.Table(["format", "path holds", "keys (default)"], Data.Readers.OwnData.Help.Select(h => (IReadOnlyList<string>)[h.Format, h.Path, h.Keys]));
            return 0;
        });
        data.Add(list);

        var outDir = new Option<string>("--out") { Description = "Root to write AudioMNIST/ under.", Required = true };
        var speakers = new Option<int>("--speakers") { Description = "Voices (speakers 01..N).", DefaultValueFactory = _ => 60 };
        var repeats = new Option<int>("--repeats") { Description = "Clips per digit per speaker.", DefaultValueFactory = _ => 5 };
        var seed = new Option<long>("--seed") { DefaultValueFactory = _ => 0 };
        var digits = new Command("spoken-digits", "Synthesise spoken digits with espeak-ng in the AudioMNIST layout (labelled synthetic).") { outDir, speakers, repeats, seed };
        digits.SetAction(p =>
        {
            var r = SpokenDigits.Generate(p.GetValue(outDir)!, p.GetValue(speakers), p.GetValue(repeats), p.GetValue(seed));
            Console.WriteLine($"{r.Clips} clips from {r.Speakers} synthetic speakers in {r.Seconds:F1} s ({r.Clips / r.Seconds:F0} clips/s) -> {r.Directory}" +
                              (r.Dropped > 0 ? $"; {r.Dropped} clips dropped (silence split failed)" : ""));
            return 0;
        });
        data.Add(digits);
        return data;
    }
}
