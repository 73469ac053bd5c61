namespace OrasStaging.Staging;

/// <summary>The image format to write: named with -Format, or taken from the target's extension (qcow2 otherwise).</summary>
internal static class TargetFormat
{
    public static string Choose(string path, string? format)
    {
        if (!string.IsNullOrEmpty(format))
        {
            return format.ToLowerInvariant();
        }

        return Path.GetExtension(path).ToLowerInvariant() switch
        {
            ".img" or ".raw" => "raw",
            ".vhd" => "vhd",
            ".vhdx" => "vhdx",
            ".vmdk" => "vmdk",
            ".vdi" => "vdi",
            _ => "qcow2",
        };
    }
}
