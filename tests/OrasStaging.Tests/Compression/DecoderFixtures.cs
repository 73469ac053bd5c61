using System.Buffers.Binary;
using System.Diagnostics;
using OrasStaging.TestKit;

namespace OrasStaging.Tests.Compression;

/// <summary>
/// Compressed inputs made by the reference CLIs (gzip, pigz, zstd), each with what decoding it must give: the original
/// bytes, or a failure. Built once per test run, in memory.
/// </summary>
internal static class DecoderFixtures
{
    public sealed record Fixture(string Name, byte[] Compressed, byte[]? Expected)
    {
        public override string ToString() => Name;
    }

    private static readonly Lazy<Dictionary<string, Fixture>> All = new(Build);

    public static Fixture Get(string name) => All.Value[name];

    public static IEnumerable<string> Names(string prefix) => All.Value.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal));

    public static byte[] Realistic(long size, int seed)
    {
        var ms = new MemoryStream();
        DiskImageGenerator.Write(ms, size, seed);
        return ms.ToArray();
    }

    public static byte[] Run(string tool, byte[] input, params string[] args)
    {
        var start = new ProcessStartInfo(tool) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args)
        {
            start.ArgumentList.Add(a);
        }

        using var p = Process.Start(start) ?? throw new InvalidOperationException($"cannot start {tool}");
        var output = new MemoryStream();
        var copy = p.StandardOutput.BaseStream.CopyToAsync(output);
        var errors = p.StandardError.ReadToEndAsync();
        p.StandardInput.BaseStream.Write(input);
        p.StandardInput.Close();
        copy.Wait();
        p.WaitForExit();
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"{tool} {string.Join(' ', args)}: exit {p.ExitCode}: {errors.Result}");
        }

        return output.ToArray();
    }

    private static byte[] Cat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();

    private static Dictionary<string, Fixture> Build()
    {
        var f = new Dictionary<string, Fixture>();
        void Add(string name, byte[] compressed, byte[]? expected) => f[name] = new Fixture(name, compressed, expected);

        byte[] small = Realistic((2L << 20) + 100, seed: 11);
        byte[] a = small[..(small.Length / 3)], b = small[(small.Length / 3)..];
        byte[] large = Realistic(48L << 20, seed: 12);
        byte[] gz = Run("gzip", small, "-6", "-c");

        // gzip: what must decode.
        Add("gzip single member", gz, small);
        Add("gzip three members, one empty", Cat(Run("gzip", a, "-c"), Run("gzip", Array.Empty<byte>(), "-c"), Run("gzip", b, "-1", "-c")), small);
        Add("gzip pigz, 128 KiB blocks, name and mtime", Run("pigz", small, "-p", "2", "-b", "128", "-N", "-c"), small);
        Add("gzip of nothing", Run("gzip", Array.Empty<byte>(), "-c"), Array.Empty<byte>());
        Add("gzip large random and zeros", Run("gzip", large, "-6", "-c"), large);
        Add("gzip stored blocks (-1 of random)", Run("gzip", Realistic(3L << 20, seed: 13)[..(1 << 20)], "-1", "-c"), Realistic(3L << 20, seed: 13)[..(1 << 20)]);
        // Trailing bytes that do not start a member are ignored, as GZipStream always has.
        Add("gzip trailing zeros", Cat(gz, new byte[1000]), small);
        Add("gzip trailing text", Cat(gz, "garbage\n"u8.ToArray()), small);

        // gzip: what must fail.
        Add("gzip truncated by half", gz[..(gz.Length / 2)], null);
        Add("gzip truncated in the trailer", gz[..^4], null);
        Add("gzip truncated by one byte", gz[..^1], null);
        Add("gzip truncated in the header", gz[..7], null);
        Add("gzip truncated second member", Cat(Run("gzip", a, "-c"), Run("gzip", b, "-c")[..^100]), null);
        byte[] corrupt = (byte[])gz.Clone();
        corrupt[gz.Length / 2] ^= 0x55;
        Add("gzip corrupt byte", corrupt, null);
        byte[] badCrc = (byte[])gz.Clone();
        badCrc[^8] ^= 0x01;
        Add("gzip wrong CRC32", badCrc, null);
        byte[] badSize = (byte[])gz.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(badSize.AsSpan(badSize.Length - 4), (uint)small.Length + 1);
        Add("gzip wrong ISIZE", badSize, null);
        Add("gzip trailing bad member", Cat(gz, new byte[] { 0x1F, 0x8B, 0x07, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 5 }), null);

        // zstd: what must decode.
        byte[] zst = Run("zstd", small, "-3", "-q", "-c");
        byte[] skip1 = Skippable(0x184D2A50, 12), skip2 = Skippable(0x184D2A5F, 0);
        Add("zstd single frame", zst, small);
        Add("zstd frames with skippable frames around", Cat(skip1, Run("zstd", a, "-q", "-c"), skip2, Run("zstd", b, "-19", "-q", "-c"), skip1), small);
        Add("zstd of nothing", Run("zstd", Array.Empty<byte>(), "-q", "-c"), Array.Empty<byte>());
        Add("zstd large random and zeros", Run("zstd", large, "-3", "-q", "-c"), large);
        Add("zstd no checksum, content size unknown", Run("zstd", small, "-q", "--no-check", "--no-content-size", "-c"), small);

        // zstd: what must fail.
        Add("zstd truncated by half", zst[..(zst.Length / 2)], null);
        Add("zstd truncated by one byte", zst[..^1], null);
        Add("zstd truncated in the header", zst[..5], null);
        Add("zstd truncated skippable frame", Cat(zst, skip1[..10]), null);
        byte[] zcorrupt = (byte[])zst.Clone();
        zcorrupt[zst.Length / 2] ^= 0x55;
        Add("zstd corrupt byte", zcorrupt, null);
        byte[] zbadCheck = (byte[])zst.Clone();
        zbadCheck[^1] ^= 0x01;
        Add("zstd wrong checksum", zbadCheck, null);
        Add("zstd trailing text", Cat(zst, "garbage\n"u8.ToArray()), null);
        return f;
    }

    private static byte[] Skippable(uint magic, int payload)
    {
        var frame = new byte[8 + payload];
        BinaryPrimitives.WriteUInt32LittleEndian(frame, magic);
        BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(4), payload);
        frame.AsSpan(8).Fill(0xAB);
        return frame;
    }
}
