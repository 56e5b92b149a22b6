using System.Text.Json;
using MetaMae.Data.Formats;
using static TorchSharp.torch;

namespace MetaMae.Model.Tests;

/// <summary>One folder of ../shared/golden: the reference implementation's weights, input, draws and results.</summary>
internal sealed class GoldenCase
{
    public string Directory { get; }
    public JsonElement Manifest { get; }
    public ModelConfig Config { get; }

    public GoldenCase(string name)
    {
        Directory = Fixtures.Golden(name);
        Manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(Directory, "manifest.json"))).RootElement;
        var m = Manifest;
        var dims = m.GetProperty("dims");
        var shape = m.GetProperty("input_shape");
        var patch = m.GetProperty("patch_size").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        InputSpec input;
        if (m.GetProperty("token_input").GetBoolean())
            input = InputSpec.TokenIds(shape[0][0].GetInt32(), shape[1].GetInt32());
        else if (shape.GetArrayLength() == 3)
            input = InputSpec.Image(shape[0].GetInt32(), shape[1].GetInt32(), shape[2].GetInt32(), patch[0], patch[1]);
        else
            input = InputSpec.Series(shape[0].GetInt32(), shape[1].GetInt32(), patch[0]);
        var size = new ModelSize(
            dims.GetProperty("embed_dim_enc").GetInt32(), dims.GetProperty("num_layer_enc").GetInt32(), dims.GetProperty("num_head_enc").GetInt32(),
            dims.GetProperty("embed_dim_dec").GetInt32(), dims.GetProperty("num_layer_dec").GetInt32(), dims.GetProperty("num_head_dec").GetInt32(),
            dims.GetProperty("dropout").GetDouble());
        var options = new ObjectiveOptions
        {
            Objective = Objective.MetaMae,
            MaskRatio = m.GetProperty("mask_ratio").GetDouble(),
            SupportRatio = m.GetProperty("s_ratio").GetDouble(),
            InnerLr = m.GetProperty("inner_lr").GetDouble(),
            ContrastiveWeight = m.GetProperty("reg_weight").GetDouble(),
            FirstOrder = m.GetProperty("first_order").GetBoolean(),
        };
        Config = new ModelConfig(input, size, options);
    }

    public double Scalar(string name) => Manifest.GetProperty("scalars").GetProperty(name).GetDouble();

    public Tensor Load(string name) => ToTensor(Npy.Read(Path.Combine(Directory, name + ".npy")));

    /// <summary>An .npy array as a tensor of the same dtype and shape.</summary>
    public static Tensor ToTensor(NpyArray a)
    {
        var dtype = a.Descr switch
        {
            "<f4" => ScalarType.Float32, "<f8" => ScalarType.Float64, "<i8" => ScalarType.Int64, "<i4" => ScalarType.Int32,
            "|u1" => ScalarType.Byte, "|b1" => ScalarType.Bool,
            _ => throw new FormatException($"dtype {a.Descr} has no tensor type here"),
        };
        var t = empty(a.Shape, dtype);
        t.bytes = a.Data;
        return t;
    }

    public bool Has(string name) => File.Exists(Path.Combine(Directory, name + ".npy"));

    /// <summary>Builds the model and copies every parameter and buffer from the fixture, by PyTorch name.</summary>
    public MaskedAutoencoder BuildModel(Objective objective = Objective.MetaMae)
    {
        var config = Config with { Options = Config.Options with { Objective = objective } };
        var model = new MaskedAutoencoder(config);
        using var _ = no_grad();
        foreach (var (name, tensor) in model.state_dict())
        {
            Assert.True(Has("param." + name), $"fixture has no parameter '{name}'");
            using var value = Load("param." + name);
            Assert.Equal(value.shape, tensor.shape);
            tensor.copy_(value);
        }
        return model;
    }

    public MaskingDraws Draws() => new(Load("rand.masking_noise"), Load("rand.support_uniform"));
}
