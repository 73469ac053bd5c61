using System.Text.Json;

namespace OrasStaging.DiskImages;

/// <summary>
/// The check of an input before qemu-img converts it: qemu-img follows the paths an image names (a backing file,
/// a qcow2 data file, the extents of a VMDK descriptor) and would copy the host's files, /etc/shadow say, into
/// the output. Metadata from an artifact is untrusted, so an input that names any file but itself is refused.
/// </summary>
internal static class QemuImgInput
{
    public static async Task CheckAsync(QemuImg qemu, string path, string format, IOperationSink sink, CancellationToken ct)
    {
        string json = await qemu.RunAsync(new[] { "info", "--output=json", "-f", format, path }, ct).ConfigureAwait(false);
        string? named;
        try
        {
            using var doc = JsonDocument.Parse(json);
            named = OtherFile(doc.RootElement, Path.GetFullPath(path));
        }
        catch (JsonException ex)
        {
            throw new OrasStagingException(ErrorCode.QemuImgFailed, $"'qemu-img info' printed something that is not JSON: {ex.Message}", null, ex);
        }

        if (named is not null)
        {
            throw new OrasStagingException(ErrorCode.UnsupportedFormat,
                $"The {format} input names another file ({named}); images that depend on other files are refused, since their content is not in the artifact.",
                "Publish a self-contained image (e.g. 'qemu-img convert -O qcow2 in out.qcow2' on a trusted machine).");
        }

        sink.Verbose($"qemu-img info: the {format} input names no other file.");
    }

    /// <summary>The first path other than <paramref name="self"/> that the image's metadata names, or null.</summary>
    internal static string? OtherFile(JsonElement info, string self)
    {
        if (info.ValueKind != JsonValueKind.Object)
        {
            return "(unreadable qemu-img info)";
        }

        foreach (string key in new[] { "backing-filename", "full-backing-filename", "backing-filename-format" })
        {
            if (info.TryGetProperty(key, out var backing))
            {
                return "backing file " + backing;
            }
        }

        if (!info.TryGetProperty("format-specific", out var specific) || specific.ValueKind != JsonValueKind.Object
            || !specific.TryGetProperty("data", out var data) || data.ValueKind != JsonValueKind.Object)
        {
            return null;
        }

        if (data.TryGetProperty("data-file", out var dataFile))
        {
            return "data file " + dataFile;
        }

        if (data.TryGetProperty("extents", out var extents) && extents.ValueKind == JsonValueKind.Array)
        {
            foreach (var extent in extents.EnumerateArray())
            {
                if (extent.ValueKind != JsonValueKind.Object || !extent.TryGetProperty("filename", out var name)
                    || name.ValueKind != JsonValueKind.String)
                {
                    return "an extent qemu-img does not name";
                }

                string file = name.GetString()!;
                if (!string.Equals(Path.GetFullPath(file), self, StringComparison.Ordinal))
                {
                    return "extent " + file;
                }
            }
        }

        return null;
    }
}
