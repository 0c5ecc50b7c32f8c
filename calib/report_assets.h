// report_assets.h: report.html's script (calib/report/report.js) and its chart renderer (Chart.js
// 3.9.1, third_party/chart.js), NUL-ended, compiled in at build time by
// calib/report/embed_assets.cmake (the generated report_assets.cpp in the build tree).
#pragma once

namespace dsv4::calib {

extern const char kReportScript[];
extern const char kReportChartJs[];

}  // namespace dsv4::calib
