using OrasStaging.Compression;
using OrasStaging.DiskImages;
using OrasStaging.Tests.Staging;

namespace OrasStaging.Tests.DiskImages;

/// <summary>Verbose names the decoder that runs, on the writer path and on the converter's path through it.</summary>
public class DecoderVerboseTests
{
    private readonly CancellationToken Timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2)).Token;

    [Theory]
    [InlineData("gzip", CompressionKind.Gzip)]
    [InlineData("zstd-frames", CompressionKind.Zstd)]
    [InlineData("none", CompressionKind.None)]
    public async Task WriterNamesTheDecoder(string encoding, CompressionKind kind)
    {
        using var dir = new TempDir();
        string input = TestInputs.Encode(dir, TestInputs.MakeRaw(dir, "allzero-3MiB"), encoding);
        var sink = new ListSink();
        await using (var stream = File.OpenRead(input))
        {
            await DiskImageWriter.WriteAsync(stream, dir.File("out.raw"), new DiskWriteOptions { Format = DiskImageFormat.Raw }, sink, Timeout);
        }

        Assert.Contains($"Decoder: {Decoders.Describe(kind)}.", sink.Lines);
    }

    [Fact]
    public async Task ConverterNamesTheDecoder()
    {
        using var dir = new TempDir();
        string input = TestInputs.Encode(dir, TestInputs.MakeRaw(dir, "allzero-3MiB"), "gzip");
        var sink = new ListSink();
        await DiskImageConverter.ConvertFileAsync(input, dir.File("out.vhdx"), new DiskWriteOptions { Format = DiskImageFormat.Vhdx }, sink, Timeout);
        Assert.Single(sink.Lines, l => l.StartsWith("Decoder: gzip: ", StringComparison.Ordinal));
    }
}
